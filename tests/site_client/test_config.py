"""site.toml as a kit writes it, and the settings a deployment needs: where the site may write
(``blocks``, ``state``) and its minimum cell size."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.pki import CertificateAuthority, enroll_site
from site_client.config import ConfigError, load_site_config


def test_a_new_kit_names_its_writable_folders_and_cell_size(tmp_path: Path) -> None:
    kit = enroll_site(
        CertificateAuthority.init(tmp_path / "ca"), "hosp-a", ["genes"], tmp_path / "kit"
    )
    cfg = load_site_config(kit / "site.toml")
    assert (
        cfg.blocks == kit.resolve() / "blocks"
        and cfg.state == kit.resolve()
        and cfg.min_cell_size == 5
    )
    text = (kit / "site.toml").read_text().replace('state = "."', 'state = "/var/lib/mmlego/site"')
    (kit / "site.toml").write_text(text.replace("min_cell_size = 5", "min_cell_size = 11"))
    cfg = load_site_config(kit / "site.toml")
    assert (
        cfg.state == Path("/var/lib/mmlego/site") and cfg.min_cell_size == 11
    )  # a read-only kit, state elsewhere
    (kit / "site.toml").write_text(text.replace("min_cell_size = 5", "min_cell_size = 0"))
    with pytest.raises(ConfigError, match="min_cell_size"):
        load_site_config(kit / "site.toml")


def test_dp_settings_are_off_in_a_new_kit_and_checked_when_set(tmp_path: Path) -> None:
    kit = enroll_site(
        CertificateAuthority.init(tmp_path / "ca"), "hosp-a", ["genes"], tmp_path / "kit"
    )
    text = (kit / "site.toml").read_text()
    assert (
        "# block_epsilon =" in text and load_site_config(kit / "site.toml").privacy.budget() is None
    )
    (kit / "site.toml").write_text(text.replace("# block_epsilon =", "block_epsilon = 3.0  #"))
    budget = load_site_config(kit / "site.toml").privacy.budget()
    assert (
        budget is not None
        and budget.epsilon == 3.0
        and budget.delta == 0.0
        and budget.max_grad_norm == 0.1
        and budget.lr == 3e-3
    )
    for bad, name in (
        ("block_epsilon = -1.0  #", "block_epsilon"),
        ("block_epsilon = inf  #", "block_epsilon"),
    ):
        (kit / "site.toml").write_text(text.replace("# block_epsilon =", bad))
        with pytest.raises(ConfigError, match=name):
            load_site_config(kit / "site.toml")
    (kit / "site.toml").write_text(text.replace("block_delta = 0.0", "block_delta = 1.5"))
    with pytest.raises(ConfigError, match="block_delta"):
        load_site_config(kit / "site.toml")
