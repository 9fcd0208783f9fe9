"""Which patients a site trains a LegoFuse round on (``round_data``): with sites "all" every
patient having one of the model's modalities, with "paired" only those having every one the site
holds; cross-fitting sites train fold run k without their fold k, and sites with a validation
split train every run on their training patients only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from common.data.dataset import MultimodalDataset
from common.data.splits import site_folds, site_split
from site_client.config import SiteConfig, load_site_config
from site_client.fuse_client import round_data
from tests.common.fuse.test_federated import dataset

MODEL = ["genes", "clinical"]


def site(tmp_path: Path, folds: int) -> SiteConfig:
    """A site.toml with ``[evaluation] folds`` (round_data reads no key, data or network)."""
    path = tmp_path / f"site-{folds}.toml"
    path.write_text(
        f'site = "hosp-x"\nmodalities = ["genes", "clinical"]\n[evaluation]\nfolds = {folds}\n'
    )
    return load_site_config(path)


def patients() -> tuple[MultimodalDataset, dict[str, set[str]]]:
    """60 patients, a quarter each with both modalities, genes only, clinical only and neither."""
    kinds = ["both", "genes", "clinical", "none"] * 15
    data = dataset(
        [k in ("both", "genes") for k in kinds], [k in ("both", "clinical") for k in kinds], seed=7
    )
    who = {k: {p for p, k2 in zip(data.ids, kinds, strict=True) if k2 == k} for k in set(kinds)}
    return data, who


def test_a_cross_fitting_site_trains_every_patient_with_a_modality_only_when_sites_is_all(
    tmp_path: Path,
) -> None:
    cfg = site(tmp_path, folds=3)
    data, who = patients()
    fold_of = site_folds(data, 3, cfg.train.seed)  # as the site's evaluation draws them
    in_fold = [{p for p, k in zip(data.ids, fold_of, strict=True) if k == f} for f in range(3)]
    for sites, kept in (
        ("paired", who["both"]),
        ("all", who["both"] | who["genes"] | who["clinical"]),
    ):
        full, folds = round_data(cfg, data, MODEL, 3, sites)
        assert set(full.ids) == kept, sites
        assert [set(f.ids) for f in folds] == [kept - in_fold[k] for k in range(3)], sites
    full, _ = round_data(cfg, data, MODEL, 3, "all")
    genes_only = [i for i, p in enumerate(full.ids) if p in who["genes"]]
    assert not full.modalities["clinical"].present[genes_only].any()  # masked, not dropped


def test_a_site_with_a_validation_split_trains_every_run_on_its_training_patients(
    tmp_path: Path,
) -> None:
    cfg = site(tmp_path, folds=0)
    data, who = patients()
    rows, _ = site_split(data, cfg.train.val_fraction, cfg.train.seed)
    training = {data.ids[i] for i in np.asarray(rows)}
    paired, same = round_data(cfg, data, MODEL, 2, "paired")
    every, also = round_data(cfg, data, MODEL, 2, "all")
    assert set(paired.ids) == training & who["both"] and all(s is paired for s in same)
    assert set(every.ids) == training - who["none"] and all(s is every for s in also)
    assert len(every) > len(paired)
    with pytest.raises(ValueError, match="must be one of paired, all"):
        round_data(cfg, data, MODEL, 2, "some")


def test_a_version_is_loaded_once_per_process_and_again_when_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round starts from the version this process loaded for the round before (Flower's
    simulation actors serve every round); a changed model.pb is loaded and checked again."""
    from common.artifacts.modelfile import version_weights
    from common.lego.recipe import Recipe
    from site_client import fuse_client
    from tests.common.artifacts.test_modelfile import _folder, _heads

    recipe = Recipe("merge", (), (3.0, 1.0), "arithmetic", "linear")
    folder = _folder(tmp_path, recipe, version_weights(recipe, _heads()), {"candidate": "size"})
    loads: list[Path] = []
    real = fuse_client.load_model_folder
    monkeypatch.setattr(fuse_client, "load_model_folder", lambda f: loads.append(f) or real(f))
    monkeypatch.setattr(fuse_client, "_LOADED", {})
    first = fuse_client.loaded_version(folder)
    assert fuse_client.loaded_version(folder) is first and loads == [folder]
    stat = (folder / "model.pb").stat()
    os.utime(folder / "model.pb", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = fuse_client.loaded_version(folder)
    assert again is not first and loads == [folder, folder]
