"""coordinator.toml as `mmlego coordinator init` writes it: the schema's defaults but for what the
options name, every setting with what it does, and files written before the schema wrote them
still load to the same configuration."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from common.cli import add_plugins, app
from common.pki import CertificateAuthority
from common.tomlconfig import read_toml
from coordinator.config import (
    CoordinatorFile,
    FlowerSection,
    MetricsSection,
    ServerSection,
    ServerTLSSection,
    load_config,
)

# What `mmlego coordinator init --listen 0.0.0.0:5000 --superlink 0.0.0.0:9999 --metrics
# 127.0.0.1:9464` wrote before coordinator.toml was written from its schema (an f-string; its
# longest comments cut here).
BEFORE = """# mmlego coordinator configuration; paths are relative to this file.
[server]
listen = "0.0.0.0:5000"
insecure = false
workers = 64

[tls]
cert = "server.crt"
key = "server.key"
ca = "ca.crt"
crl = "crl.pem"

[store]
path = "store"
max_block_mb = 1024
max_open_uploads_per_site = 8
upload_ttl_hours = 24
verify_on_start = true
busy_timeout_s = 30

[evaluation]
deadline_s = 600  # longest wait for the sites' scores of a merge, a fuse round or an evaluation
z = 1.0  # a candidate replaces the uniform merge only with a gain above z standard errors

[metrics]
listen = "127.0.0.1:9464"  # e.g. "127.0.0.1:9464": /metrics (Prometheus) and /healthz

[flower]
superlink = "0.0.0.0:9999"  # the Flower SuperLink (`mmlego coordinator superlink`)
home = "flower"
"""


def init(tmp_path: Path, *options: str) -> Path:
    if not (tmp_path / "ca").exists():
        CertificateAuthority.init(tmp_path / "ca")
    out = tmp_path / f"coord{len(list(tmp_path.glob('coord*')))}"
    add_plugins()
    done = CliRunner().invoke(
        app, ["coordinator", "init", "--out", str(out), "--ca", str(tmp_path / "ca"), *options]
    )
    assert done.exit_code == 0, done.output
    return out / "coordinator.toml"


def test_init_writes_the_schema_defaults_but_for_what_its_options_name(tmp_path: Path) -> None:
    plain = read_toml(init(tmp_path), CoordinatorFile)
    assert plain == CoordinatorFile(tls=ServerTLSSection(crl="crl.pem"))
    given = init(
        tmp_path,
        *("--listen", "0.0.0.0:5000", "--superlink", "0.0.0.0:9999"),
        *("--metrics", "127.0.0.1:9464"),
    )
    assert read_toml(given, CoordinatorFile) == CoordinatorFile(
        server=ServerSection(listen="0.0.0.0:5000"),
        tls=ServerTLSSection(crl="crl.pem"),
        flower=FlowerSection(superlink="0.0.0.0:9999"),
        metrics=MetricsSection(listen="127.0.0.1:9464"),
    )
    cfg = load_config(given)
    assert cfg.crl == given.parent.resolve() / "crl.pem" and cfg.crl.is_file()


def test_every_setting_is_written_with_what_it_does(tmp_path: Path) -> None:
    lines = init(tmp_path).read_text().splitlines()
    for name, section in CoordinatorFile():
        assert isinstance(section, BaseModel)
        at = lines.index(f"[{name}]")
        written = lines[at + 1 : at + 1 + len(type(section).model_fields)]
        for (key, _), line in zip(section, written, strict=True):
            info = type(section).model_fields[key]
            assert line.startswith(f"{key} = "), (name, line)
            assert info.description is None or line.endswith(f"  # {info.description}"), line


def test_a_file_written_before_the_schema_wrote_it_loads_the_same(tmp_path: Path) -> None:
    now = init(
        tmp_path,
        *("--listen", "0.0.0.0:5000", "--superlink", "0.0.0.0:9999"),
        *("--metrics", "127.0.0.1:9464"),
    )
    before = now.with_name("before.toml")
    before.write_text(BEFORE)
    assert dataclasses.replace(load_config(before), path=None) == dataclasses.replace(
        load_config(now), path=None
    )


@pytest.mark.parametrize(
    ("setting", "bad"), [("store.max_block_mb", "0"), ("flower.min_sites", "0")]
)
def test_a_value_outside_the_schema_is_named(tmp_path: Path, setting: str, bad: str) -> None:
    path = init(tmp_path)
    key = setting.split(".")[1]
    path.write_text(re.sub(f"^{key} = .*$", f"{key} = {bad}", path.read_text(), flags=re.M))
    with pytest.raises(ValueError, match=re.escape(setting)):
        load_config(path)
