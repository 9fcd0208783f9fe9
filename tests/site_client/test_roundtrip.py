"""The whole path on real data through the command line: CA, two sites with different modalities
and an operator; tasks, training, push, merge, pull, predict; and the pulled model predicts bit for
bit what an in-process LegoMerge of the same blocks predicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from common.artifacts import load_block, load_signing_key, save_block
from common.cli import EXIT_BAD_INPUT, add_plugins, app
from common.data import load_builtin
from common.data.export import export_site_folder
from common.data.sitefolder import load_site_folder
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


def site_toml(kit: Path, data: Path, port: int) -> Path:
    return edit_site_toml(
        kit / "site.toml",
        data=str(data),
        task="nki70",
        coordinator=f"127.0.0.1:{port}",
        **{"train.epochs": 4, "train.patience": 2},
    )


def test_round_trip_on_nki70(tmp_path: Path) -> None:
    data = load_builtin("nki70")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    a_rows, b_rows, test_rows = order[:55], order[55:110], order[110:]
    export_site_folder(data.subset(a_rows).select_modalities(["genes"]), tmp_path / "data-a")
    export_site_folder(data.subset(b_rows).select_modalities(["clinical"]), tmp_path / "data-b")
    export_site_folder(data.subset(test_rows), tmp_path / "data-test")
    assert data.time is not None and data.event is not None
    edges = survival_bins(
        data.time[a_rows], data.event[a_rows], 4
    )  # the operator's choice of time bins
    (tmp_path / "task.toml").write_text(
        f'id = "nki70"\nkind = "survival"\nn_bins = 4\nbin_edges = {list(edges)}\n'
        'modalities = ["genes", "clinical"]\nlatent_rows = 8\nlatent_dim = 16\n'
    )

    mmlego("ca", "init", "--dir", tmp_path / "ca")
    mmlego(
        "ca",
        "enroll",
        "hosp-a",
        "--modality",
        "genes",
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
        "clinical",
        "--paired",
        "--out",
        tmp_path / "kit-b",
        "--dir",
        tmp_path / "ca",
    )
    mmlego("ca", "enroll-admin", "ops", "--out", tmp_path / "kit-ops", "--dir", tmp_path / "ca")
    mmlego(
        "coordinator", "init", "--out", tmp_path / "coord", "--ca", tmp_path / "ca", "--port", "0"
    )
    config = tmp_path / "coord" / "coordinator.toml"
    mmlego("coordinator", "task", "create", tmp_path / "task.toml", "--config", config)
    assert "already exists" in mmlego(
        "coordinator",
        "task",
        "create",
        tmp_path / "task.toml",
        "--config",
        config,
        code=EXIT_BAD_INPUT,
    )

    with serve(load_config(config)) as running:
        kits = {
            s: site_toml(tmp_path / f"kit-{s}", tmp_path / f"data-{s}", running.port) for s in "ab"
        }
        blocks = {}
        for s, cfg in kits.items():
            out = mmlego("site", "train", "--config", cfg)
            assert (
                "trained block" in out and "out-of-fold c-index" in out
            )  # a kit cross-fits ([evaluation] folds = 5)
            (folder,) = sorted((tmp_path / f"kit-{s}" / "blocks").glob("nki70-*"))
            blocks[s] = folder
            assert "accepted: block" in mmlego("site", "push", folder, "--config", cfg)
            assert "already stored" in mmlego("site", "push", folder, "--config", cfg)
        bad_folds_through_the_cli(kits["a"])
        dp_blocks_through_the_cli(tmp_path, config, kits["a"], blocks["a"])
        out = mmlego(
            "coordinator", "merge", "--task", "nki70", "--config", config, "--deadline", "0"
        )  # no site evaluates here
        assert "created model version nki70-v1 (merge, 2 blocks): not measured by the sites" in out
        mmlego("site", "pull", "nki70-v1", "--config", kits["a"], "--out", tmp_path / "model")
        assert "not empty" in mmlego(
            "site",
            "pull",
            "nki70-v1",
            "--config",
            kits["a"],
            "--out",
            tmp_path / "model",
            code=EXIT_BAD_INPUT,
        )
        assert "NOT_FOUND" in mmlego(
            "site", "pull", "nki70-v9", "--config", kits["a"], "--out", tmp_path / "m9", code=1
        )

    mmlego(
        "site",
        "predict",
        "--model",
        tmp_path / "model",
        "--data",
        tmp_path / "data-test",
        "--out",
        tmp_path / "preds.csv",
    )
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == len(test_rows) and set(preds["modalities"]) == {"genes+clinical"}
    # In process, from the sites' own block folders: the same numbers, bit for bit.
    local = Recipe("merge").make(
        [load_block(blocks["b"])[0].eval(), load_block(blocks["a"])[0].eval()]
    )  # clinical, genes
    test = load_site_folder(tmp_path / "data-test")
    expected = predict_scores(local, test, local.block_list[0].config.task, amp=False)
    assert np.array_equal(preds["risk"].to_numpy(dtype=np.float32), expected.astype(np.float32))
    # One modality only: exactly that block's own prediction.
    genes = export_site_folder(
        data.subset(test_rows).select_modalities(["genes"]), tmp_path / "data-genes"
    )
    # New patients: no outcome columns at all (prediction needs only ids and features).
    labels = pd.read_csv(genes / "labels.csv")
    labels[["patient_id"]].to_csv(genes / "labels.csv", index=False)
    toml = (genes / "data.toml").read_text()
    (genes / "data.toml").write_text(
        toml.replace('time = "time"\n', "").replace('event = "event"\n', "")
    )
    assert "time and event" in mmlego(
        "site", "train", "--config", kits["a"], "--data", genes, code=EXIT_BAD_INPUT
    )
    mmlego(
        "site",
        "predict",
        "--model",
        tmp_path / "model",
        "--data",
        tmp_path / "data-genes",
        "--out",
        tmp_path / "g.csv",
    )
    genes_only = pd.read_csv(tmp_path / "g.csv")
    block_a = load_block(blocks["a"])[0].eval()
    from common.lego import SingleModality

    own = predict_scores(
        SingleModality(block_a, "genes"),
        test.select_modalities(["genes"]),
        block_a.config.task,
        amp=False,
    )
    assert np.array_equal(genes_only["risk"].to_numpy(dtype=np.float32), own.astype(np.float32))
    assert (
        float(block_a.scaling.std.min()) > 0 and float(block_a.scaling.mean.abs().max()) > 0
    )  # site scaling travels


def bad_folds_through_the_cli(kit: Path) -> None:
    """Folds the settings or the site's patients cannot support: one line naming the setting,
    exit 2, nothing trained."""
    text = kit.read_text()
    assert "folds = 5" in text
    before = sorted(p.name for p in (kit.parent / "blocks").iterdir())
    for folds, words in (
        ("1", "folds = 1 cannot cross-fit"),
        ("-2", "evaluation.folds"),
        ("40", "[evaluation] folds = 40 is more folds than this site's smallest class"),
    ):
        kit.write_text(text.replace("folds = 5", f"folds = {folds}"))
        out = mmlego("site", "train", "--config", kit, code=EXIT_BAD_INPUT)
        assert words in out and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    kit.write_text(text)
    assert sorted(p.name for p in (kit.parent / "blocks").iterdir()) == before


def dp_blocks_through_the_cli(tmp_path: Path, config: Path, kit: Path, plain_block: Path) -> None:
    """A task that takes DP blocks only (epsilon <= 3, public ranges): a site's bad DP settings are
    named (exit 2), a block without DP is refused (FAILED_PRECONDITION), a DP block is accepted
    with its accounting on the manifest."""
    import json

    (tmp_path / "task-dp.toml").write_text(
        (tmp_path / "task.toml").read_text().replace('id = "nki70"', 'id = "nki70-dp"')
        + "max_block_epsilon = 3.0\n[public_ranges.genes]\nall = [-2.0, 2.0]\n"
        "[public_ranges.clinical]\nfeatures = { num_Age = [18.0, 95.0] }\n"
    )
    mmlego("coordinator", "task", "create", tmp_path / "task-dp.toml", "--config", config)
    text = kit.read_text()
    assert (
        "# block_epsilon =" in text and "block_delta = 0.0" in text
    )  # a kit's site.toml: DP off, said how to turn it on
    for epsilon, delta, words in (
        ("0", "0.0", "block_epsilon"),
        ("1e-9", "0.0", "too small for even one epoch"),
        ("3.0", "1.0", "block_delta"),
    ):
        kit.write_text(
            text.replace("# block_epsilon =", f"block_epsilon = {epsilon}  #").replace(
                "block_delta = 0.0", f"block_delta = {delta}"
            )
        )
        assert words in mmlego(
            "site", "train", "--config", kit, "--task", "nki70-dp", code=EXIT_BAD_INPUT
        )
    kit.write_text(text.replace("# block_epsilon =", "block_epsilon = 3.0  #"))
    assert "trained block" in mmlego("site", "train", "--config", kit, "--task", "nki70-dp")
    (folder,) = sorted((kit.parent / "blocks").glob("nki70-dp-*"))
    dp = json.loads((folder / "manifest.json").read_text())["dp"]
    assert (
        0 < dp["epsilon"] <= 3.0
        and dp["accountant"] == "rdp"
        and dp["input_scaling"] == "public ranges of the task"
    )
    assert "accepted: block" in mmlego("site", "push", folder, "--config", kit)
    copy = tmp_path / "plain-for-dp"
    shutil.copytree(plain_block, copy)
    kit.write_text(text)
    block, manifest = load_block(copy)
    save_block(
        block,
        copy,
        site=manifest.site,
        task_id="nki70-dp",
        train_stats=manifest.train_stats,
        signing_key=load_signing_key(kit.parent / "signing.key"),
    )
    assert "FAILED_PRECONDITION" in mmlego("site", "push", copy, "--config", kit, code=1)


def test_site_cli_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text('site = "x"\nmodalities = ["a"]\nbogus = 1\n')
    assert "bogus" in mmlego(
        "site", "train", "--config", tmp_path / "site.toml", code=EXIT_BAD_INPUT
    )
    assert "not found" in mmlego(
        "site", "push", tmp_path, "--config", tmp_path / "nope.toml", code=EXIT_BAD_INPUT
    )
    (tmp_path / "c.toml").write_text('[server]\nlisten = "0.0.0.0:1"\ninsecure = true\n')
    assert "loopback" in mmlego(
        "coordinator", "serve", "--config", tmp_path / "c.toml", code=EXIT_BAD_INPUT
    )
    assert "missing.toml: not found" in mmlego(
        "coordinator",
        "merge",
        "--task",
        "t",
        "--config",
        tmp_path / "missing.toml",
        code=EXIT_BAD_INPUT,
    )
