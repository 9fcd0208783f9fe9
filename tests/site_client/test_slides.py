"""Slides through the command line: a hospital with per-slide HDF5 feature files and one with
gene expression train, push, merge and pull; the pulled model predicts, from the slide files of
new patients, bit for bit what the same merge predicts in process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from common.artifacts import load_block
from common.cli import add_plugins, app
from common.data.export import export_site_folder
from common.data.sitefolder import load_site_folder
from common.data.slidecohort import SlideCohort, write_slide_cohort
from common.lego.recipe import Recipe
from common.tasks import survival_bins
from common.train import predict_scores
from coordinator.config import load_config
from coordinator.server import serve
from tests.factories import edit_site_toml

add_plugins()


def mmlego(*args: str | Path, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def test_slides_train_push_merge_pull_and_predict(tmp_path: Path) -> None:
    cohort = write_slide_cohort(
        tmp_path / "cohort",
        SlideCohort(
            slides=96,
            features=16,
            median_instances=60,
            min_instances=10,
            max_instances=300,
            genes=8,
            seed=4,
        ),
        train_instances=40,
    )
    check = mmlego("datasets", "check", cohort)
    assert (
        "slides: bag of 16 features (float16), 96 slides of 90 patients" in check
        and "at most 40 instances" in check
    )
    data = load_site_folder(cohort)
    order = np.random.default_rng(0).permutation(len(data))
    a_rows, b_rows, test_rows = order[:35], order[35:70], order[70:]
    export_site_folder(data.subset(a_rows).select_modalities(["slides"]), tmp_path / "data-a")
    export_site_folder(data.subset(b_rows).select_modalities(["genes"]), tmp_path / "data-b")
    export_site_folder(data.subset(test_rows), tmp_path / "data-test")
    assert data.time is not None and data.event is not None
    edges = [round(e, 2) for e in survival_bins(data.time[a_rows], data.event[a_rows], 4)]
    (tmp_path / "task.toml").write_text(
        f'id = "syn"\nkind = "survival"\nn_bins = 4\nbin_edges = {edges}\n'
        'modalities = ["genes", "slides"]\nlatent_rows = 8\nlatent_dim = 16\n'
    )
    mmlego("ca", "init", "--dir", tmp_path / "ca")
    mmlego(
        "ca",
        "enroll",
        "hosp-a",
        "--modality",
        "slides",
        "--out",
        tmp_path / "kit-a",
        "--dir",
        tmp_path / "ca",
    )
    mmlego(
        "ca",
        "enroll",
        "hosp-b",
        "--modality",
        "genes",
        "--out",
        tmp_path / "kit-b",
        "--dir",
        tmp_path / "ca",
    )
    mmlego(
        "coordinator", "init", "--out", tmp_path / "coord", "--ca", tmp_path / "ca", "--port", "0"
    )
    config = tmp_path / "coord" / "coordinator.toml"
    mmlego("coordinator", "task", "create", tmp_path / "task.toml", "--config", config)
    with serve(load_config(config)) as running:
        blocks = {}
        for s in "ab":
            cfg = edit_site_toml(
                tmp_path / f"kit-{s}" / "site.toml",
                data=str(tmp_path / f"data-{s}"),
                task="syn",
                coordinator=f"127.0.0.1:{running.port}",
                **{"train.epochs": 3, "train.patience": 2},
            )
            assert "trained block" in mmlego("site", "train", "--config", cfg)
            (blocks[s],) = sorted((tmp_path / f"kit-{s}" / "blocks").glob("syn-*"))
            assert "accepted: block" in mmlego("site", "push", blocks[s], "--config", cfg)
        mmlego("coordinator", "merge", "--task", "syn", "--config", config, "--deadline", "0")
        mmlego(
            "site",
            "pull",
            "syn-v1",
            "--config",
            tmp_path / "kit-a" / "site.toml",
            "--out",
            tmp_path / "model",
        )
    slides_block = load_block(blocks["a"])[0]
    assert (
        slides_block.config.encoder.kind == "bag" and slides_block.config.encoder.in_features == 16
    )
    assert (
        float(slides_block.scaling.std.min()) > 0
    )  # the site's instance scaling travels with the block
    mmlego(
        "site",
        "predict",
        "--model",
        tmp_path / "model",
        "--data",
        tmp_path / "data-test",
        "--out",
        tmp_path / "p.csv",
    )
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == len(test_rows) and {
        frozenset(m.split("+")) for m in preds["modalities"]
    } == {frozenset({"genes", "slides"})}
    local = Recipe("merge").make(
        [load_block(blocks["b"])[0].eval(), slides_block.eval()]
    )  # genes, slides: the task's order
    expected = predict_scores(
        local, load_site_folder(tmp_path / "data-test"), local.block_list[0].config.task, amp=False
    )
    assert np.array_equal(preds["risk"].to_numpy(dtype=np.float32), expected.astype(np.float32))
