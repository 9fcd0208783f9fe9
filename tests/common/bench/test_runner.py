"""Benchmark pieces: patient-overlap subsets, ensemble, classical model, report."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from common.bench.baselines import Classical, LateConcat, summary_features
from common.bench.report import aggregate, markdown, uplift, write_report
from common.bench.runner import JobResult, ensemble_scores, overlap_subsets
from common.data import ModalityData, MultimodalDataset
from common.lego import EncoderConfig, SingleModality
from common.tasks import TaskSpec, auc
from common.train import predict_scores
from tests.factories import bag, block, tabular


@settings(max_examples=50, deadline=None)
@given(st.integers(20, 400), st.sampled_from([0.0, 0.5, 1.0]), st.integers(0, 1000))
def test_overlap_subsets_have_the_asked_symmetric_difference(n: int, s: float, seed: int) -> None:
    a, b = overlap_subsets(n, s, np.random.default_rng(seed))
    sa, sb = set(a.tolist()), set(b.tolist())
    assert len(sa) == len(sb) == n // 2 == len(a)
    ratio = len(sa ^ sb) / len(sa | sb)
    assert abs(ratio - s) <= 2 / (n // 2)  # up to rounding of the shared count


def toy(n: int = 6) -> MultimodalDataset:
    g = torch.Generator().manual_seed(0)
    mods = {
        "a": ModalityData(
            "tabular",
            torch.randn(n, 5, generator=g),
            torch.tensor([True] * (n - 1) + [False]),
            [f"f{i}" for i in range(5)],
        ),
        "b": ModalityData(
            "sequence",
            torch.randn(n, 7, 4, generator=g),
            torch.ones(n, dtype=torch.bool),
            [f"g{i}" for i in range(4)],
            bag(b=n).mask,
        ),
    }
    return MultimodalDataset(
        "toy",
        "survival",
        [str(i) for i in range(n)],
        mods,
        time=np.arange(1.0, n + 1),
        event=np.ones(n, dtype=bool),
    )


def test_ensemble_averages_present_blocks_only() -> None:
    data = toy()
    a, b = block("a", seed=1), block("b", kind="bag", in_features=4, seed=2)
    spec = a.config.task
    ra = predict_scores(SingleModality(a, "a"), data, spec)
    rb = predict_scores(SingleModality(b, "b"), data, spec)
    out = ensemble_scores(spec, [a, b], data)
    np.testing.assert_allclose(out[:-1], (ra[:-1] + rb[:-1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[-1], rb[-1], rtol=1e-6)  # sample without modality a


def test_summary_features_of_a_variable_length_sequence() -> None:
    x = torch.tensor([[[1.0], [3.0], [0.0]], [[5.0], [0.0], [0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    mod = ModalityData("sequence", x, torch.ones(2, dtype=torch.bool), ["v"], mask)
    # mean, last, min, max over real steps
    np.testing.assert_allclose(summary_features(mod), [[2.0, 3.0, 1.0, 3.0], [5.0, 5.0, 5.0, 5.0]])


def test_late_concat_zeroes_absent_modalities() -> None:
    torch.manual_seed(0)
    cfg = EncoderConfig("tabular", in_features=5, token_dim=8, n_tokens=2, dropout=0.0)
    model = LateConcat(
        {"a": cfg, "c": EncoderConfig("tabular", in_features=3, token_dim=8, dropout=0.0)}, 4
    ).eval()
    present = torch.tensor([True, False, True, False, True])
    with_c = model({"a": tabular(), "c": tabular(f=3, present=present)})
    without = model({"a": tabular()})
    assert torch.allclose(with_c[~present], without[~present])


def test_classical_classification_beats_chance_on_a_signal() -> None:
    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=(n, 4)).astype(np.float32)
    label = (x[:, 0] > 0).astype(int)
    mod = ModalityData(
        "tabular", torch.from_numpy(x), torch.ones(n, dtype=torch.bool), list("abcd")
    )
    data = MultimodalDataset(
        "t", "classification", [str(i) for i in range(n)], {"m": mod}, label=label, n_classes=2
    )
    spec = TaskSpec("classification", n_classes=2)
    model = Classical(spec, ["m"]).fit(data.subset(range(100)), data.subset(range(100, 150)))
    probs = model.scores(data.subset(range(150, 200)))
    assert auc(label[150:], probs) > 0.95


def fake_results() -> list[JobResult]:
    out = []
    for seed, (ga, gb, merge) in enumerate([(0.6, 0.7, 0.75), (0.62, 0.66, 0.7)]):
        r = JobResult(
            "d",
            seed,
            "c-index",
            test={
                "block:a": ga,
                "block:b": gb,
                "legomerge": merge,
                "fig6:legomerge@0": 0.6,
                "fig6:ensemble@0": 0.5,
                "fig6:legomerge@0.5": 0.6,
                "fig6:ensemble@0.5": 0.5,
                "fig6:legomerge@1": 0.6,
                "fig6:ensemble@1": 0.5,
            },
        )
        r.predictions["legomerge"] = [0.1, 0.5, 0.9, 0.3]
        r.targets = {"time": [1.0, 2.0, 3.0, 4.0], "event": [1, 0, 1, 1]}
        out.append(r)
    return out


def test_report_aggregates_by_hand(tmp_path: Path) -> None:
    rows = aggregate(fake_results())
    merge = next(r for r in rows if r["method"] == "legomerge")
    assert merge["mean"] == pytest.approx(0.725) and merge["std"] == pytest.approx(0.025)
    assert merge["folds"] == [0.75, 0.7] and merge["seeds"] == [0, 1]
    assert uplift(rows, "d") == pytest.approx(0.725 - 0.68)
    md = markdown(rows, {"command": "mmlego bench", "splits": 2, "seeds": [0, 1]})
    assert (
        "merge uplift vs best block: +0.045" in md
        and "| 0.5 | 0.600 +- 0.000 | 0.500 +- 0.000 |" in md
    )
    doc = write_report(fake_results(), {"command": "x"}, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == doc["rows"]
    assert {"d-bars.png", "d-km.png"} <= {p.name for p in tmp_path.iterdir()}


def test_ablations_add_their_rows_and_leave_the_uplift_alone() -> None:
    from dataclasses import replace

    from common.bench.runner import BenchConfig, run_job

    cfg = BenchConfig.make(
        ["nki70"], 1, quick=True, methods=("blocks", "legomerge"), figure6=False, ablations=True
    )
    cfg = replace(
        cfg, experiment=replace(cfg.experiment, train=replace(cfg.experiment.train, epochs=1))
    )
    r = run_job("nki70", 0, cfg)
    assert {"legomerge:no-shared-init", "legomerge:fourier-1d", "block:genes:fourier-1d"} <= set(
        r.test
    )
    rows = aggregate([r])
    best = max(r.test["block:genes"], r.test["block:clinical"])
    assert uplift(rows, "nki70") == pytest.approx(
        r.test["legomerge"] - best
    )  # ablation blocks not counted
