"""site.toml as a kit writes it, and the settings a deployment needs: where the site may write
(``blocks``, ``state``) and its minimum cell size."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.pki import CertificateAuthority, enroll_site
from site_client.config import ConfigError, load_site_config


def test_a_new_kit_names_its_writable_folders_and_cell_size(tmp_path: Path) -> None:
    kit = enroll_site(CertificateAuthority.init(tmp_path / "ca"), "hosp-a", ["genes"], tmp_path / "kit")
    cfg = load_site_config(kit / "site.toml")
    assert cfg.blocks == kit.resolve() / "blocks" and cfg.state == kit.resolve() and cfg.min_cell_size == 5
    text = (kit / "site.toml").read_text().replace('state = "."', 'state = "/var/lib/mmlego/site"')
    (kit / "site.toml").write_text(text.replace("min_cell_size = 5", "min_cell_size = 11"))
    cfg = load_site_config(kit / "site.toml")
    assert cfg.state == Path("/var/lib/mmlego/site") and cfg.min_cell_size == 11  # a read-only kit, state elsewhere
    (kit / "site.toml").write_text(text.replace("min_cell_size = 5", "min_cell_size = 0"))
    with pytest.raises(ConfigError, match="min_cell_size"):
        load_site_config(kit / "site.toml")
