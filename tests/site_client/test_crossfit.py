"""Cross-fitting at a site, over real mutual TLS on loopback: the site trains its blocks with fold
copies (kept in its state folder, never pushed), and scores a candidate on *every* one of its
patients, each through the candidate rebuilt from the fold copies that never saw it; a block of
its own without fold copies is not scored; a LegoFuse round carries one fold run per fold and
the site scores each patient through the run that never trained on its fold."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from common.artifacts.foldcopies import fold_folder, load_fold_copies
from common.client import RegistryClient
from common.data.sitefolder import load_site_folder
from common.data.splits import site_folds
from common.evaluation.candidates import Candidate
from common.evaluation.scoring import score_models
from common.fuse import FuseConfig, fused_model
from common.fuse.wire import trainable_names
from common.lego import LegoBlock
from common.lego.recipe import Recipe
from common.lego.soup import modality_groups, shifted, soup
from common.pki import enroll_site
from common.sitetoml import EvaluationSection as SiteEvaluation
from common.train.siteblock import BlockTraining
from coordinator.fuse_run import RoundJudge
from coordinator.fusing import starting_model
from site_client.evaluate import evaluate_pending
from site_client.train import current_blocks, train_site
from tests.coordinator.conftest import Consortium
from tests.coordinator.test_evaluation import answer_until, evaluating, site

QUICK = BlockTraining(
    epochs=3, patience=3, token_dim=8, n_tokens=2, depth=1, device="cpu", loader_workers=0
)


def cross_fitted_site(
    consortium: Consortium, name: str, address: str, tmp_path: Path, folds: int = 3, seed: int = 5
) -> Any:
    """A paired site (genes and clinical) that trained and pushed its blocks with ``folds`` fold
    copies (``seed``: its patients)."""
    if not consortium.kit(name).exists():
        enroll_site(consortium.ca, name, ["genes", "clinical"], consortium.kit(name), paired=True)
    cfg = site(consortium, name, address, tmp_path, n=90, seed=seed)
    cfg = replace(
        cfg, train=QUICK, evaluation=SiteEvaluation(folds=folds), modalities=("genes", "clinical")
    )
    with RegistryClient(address, consortium.tls(name)) as client:
        for trained in train_site(cfg, client.task("t1"), load_site_folder(cfg.data)):
            client.push(trained.folder)
    return cfg


def test_a_site_scores_every_patient_through_the_fold_copies_that_never_saw_it(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        cfg = cross_fitted_site(consortium, "hosp-x", address, tmp_path)
        reg = running.registry
        blocks = {b.modality: b.block_id for b in reg.blocks("t1")}
        for block_id in blocks.values():  # kept at the site, beside nothing that is pushed
            assert load_fold_copies(fold_folder(cfg.state, block_id)).folds == 3
            assert not list(Path(current_blocks(cfg, "t1")["genes"]).glob("fold-*"))
        ids = (blocks["genes"], blocks["clinical"])
        job = reg.evaluations.open(
            reg.task("t1"),
            "merge",
            [
                Candidate("u", "merge", "uniform", ids),
                Candidate("g", "merge", "genes alone", (blocks["genes"],)),
            ],
            30,
        )
        data = load_site_folder(cfg.data)
        with RegistryClient(address, consortium.tls("hosp-x")) as client:
            (answer,) = evaluate_pending(cfg, client, data)
        assert answer.job_id == job.job_id and answer.scored == 2
        got = reg.evaluations.scores(job.job_id)["u"]["hosp-x"]
        assert got.patients == len(data) == 90  # every patient, no validation split

        # by hand: patients of fold k through the merge of the fold-k copies
        fold_of = site_folds(data, 3, cfg.train.seed)
        copies = {m: load_fold_copies(fold_folder(cfg.state, i)) for m, i in blocks.items()}
        parts = []
        for k in range(3):
            merged = Recipe("merge").make([copies["genes"].blocks[k], copies["clinical"].blocks[k]])
            parts.append((np.flatnonzero(fold_of == k), (merged, merged.modalities)))
        (want,) = score_models([parts], data, reg.task("t1").spec, cfg.min_cell_size)
        assert (
            want is not None
            and got.strata == want.strata
            and got.var_metric == pytest.approx(want.var_metric)
        )

        # a block of its own without fold copies cannot be scored out of fold: left out, the rest is
        # scored
        import shutil

        shutil.rmtree(fold_folder(cfg.state, blocks["genes"]))
        again = reg.evaluations.open(
            reg.task("t1"),
            "merge",
            [
                Candidate("c", "merge", "clinical alone", (blocks["clinical"],)),
                Candidate("u2", "ensemble", "ensemble", ids),
            ],
            30,
        )
        with RegistryClient(address, consortium.tls("hosp-x")) as client:
            (answer,) = evaluate_pending(cfg, client, data)
        assert answer.scored == 1 and set(reg.evaluations.scores(again.job_id)) == {"c"}

        # back to a validation split: its cross-fitted blocks trained on those patients too, so they
        # are not scored
        split = replace(cfg, evaluation=SiteEvaluation(folds=0))
        third = reg.evaluations.open(
            reg.task("t1"),
            "merge",
            [Candidate("c2", "merge", "clinical", (blocks["clinical"],))],
            30,
        )
        with RegistryClient(address, consortium.tls("hosp-x")) as client:
            (answer,) = evaluate_pending(split, client, data)
        assert (
            answer.job_id == third.job_id
            and answer.declined == "too-few-patients"
            and answer.scored == 0
        )


def test_a_grouped_candidate_is_scored_through_modality_blocks_holding_the_fold_copies(
    consortium: Consortium, tmp_path: Path
) -> None:
    """Hierarchical Lego at a site: each modality's blocks (its own and another site's) averaged
    into one modality block; a patient of fold k is scored through the modality blocks holding
    the site's fold-k copies in place of its released blocks; the modality blocks of the
    released blocks are kept in the state folder and serve the next job without being made
    again."""
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        cfg = cross_fitted_site(consortium, "hosp-x", address, tmp_path)
        cross_fitted_site(consortium, "hosp-y", address, tmp_path, seed=6)  # same task and start
        reg = running.registry
        ids = tuple(b.block_id for b in reg.blocks("t1"))
        mods = [b.modality for b in reg.blocks("t1")]
        groups = modality_groups(mods)
        assert sorted(groups) == [0, 0, 1, 1]
        job = reg.evaluations.open(
            reg.task("t1"),
            "merge",
            [
                Candidate("h", "merge", "merge of modality blocks", ids, groups=groups),
                Candidate("he", "ensemble", "ensemble of modality blocks", ids, groups=groups),
            ],
            30,
        )
        data = load_site_folder(cfg.data)
        with RegistryClient(address, consortium.tls("hosp-x")) as client:
            (answer,) = evaluate_pending(cfg, client, data)
        assert answer.job_id == job.job_id and answer.scored == 2
        got = reg.evaluations.scores(job.job_id)["h"]["hosp-x"]
        kept = sorted((cfg.state / "modality-blocks").iterdir())
        assert len(kept) == 2  # genes and clinical, of the released blocks

        # by hand: each modality block of the released blocks with the site's fold-k copy shifted
        # in for its own block (that the shift is the average made afresh, to float precision:
        # tests/common/lego/test_soup.py)
        released = start_blocks(reg, ids)
        mine = {i for i in ids if reg.block(i).site == "hosp-x"}

        def merged(blocks: list[Any]) -> Any:
            def modality_block(idx: Sequence[int], share: Sequence[float]) -> Any:
                out = soup([released[p] for p in idx], share)
                for p, w in zip(idx, share, strict=True):
                    if ids[p] in mine:
                        out = shifted(out, w, released[p], blocks[p])
                return out

            model = Recipe("merge", ids, groups=groups).make_of(modality_block)
            assert len(model.block_list) == 2
            return model

        parts = by_fold(reg, cfg, data, ids, merged)
        (want,) = score_models([parts], data, reg.task("t1").spec, cfg.min_cell_size)
        assert want is not None and got.patients == want.patients == 90
        assert abs(got.metric - want.metric) < 1e-9

        # the next job reads the kept modality blocks: the other site's weights are not read again
        for i in ids:
            if i not in mine:
                (cfg.state / "verified-blocks" / i / "weights.safetensors").write_bytes(b"gone")
        again = reg.evaluations.open(
            reg.task("t1"),
            "merge",
            [
                Candidate(
                    "h2",
                    "merge",
                    "merge of modality blocks",
                    ids,
                    groups=groups,
                    head_merge="linear",
                )
            ],
            30,
        )
        with RegistryClient(address, consortium.tls("hosp-x")) as client:
            (answer,) = evaluate_pending(cfg, client, data)
        assert answer.job_id == again.job_id and answer.scored == 1
        assert sorted((cfg.state / "modality-blocks").iterdir()) == kept


def test_a_round_carries_a_fold_run_per_fold_each_patient_scored_by_the_run_blind_to_its_fold(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        cfg = cross_fitted_site(consortium, "hosp-x", address, tmp_path)
        reg = running.registry
        parent = reg.merge("t1", evaluate=False)
        parent_rec, start, fuse_cfg = starting_model(reg, parent.model_id, FuseConfig())
        assert fuse_cfg.folds == 3  # from the blocks' manifests
        names, state, runs, verdict = judged_round(consortium, address, cfg, reg, parent_rec, start)
        assert verdict is not None and verdict.sites == ("hosp-x",)
        job = reg.evaluations.statuses("t1")[0].job
        assert job.candidates[1].folds == 3 and job.candidates[1].weights_size == 4 * 4 * sum(
            state[n].numel() for n in names
        )
        got = verdict.scores["hosp-x"]

        data = load_site_folder(cfg.data)
        # fold run k's change, on the LegoFuse of the fold-k copies (the site holds every block)
        make = moved(lambda blocks: fused_model(blocks, "stack"), runs, state, names)
        parts = by_fold(reg, cfg, data, parent_rec.block_ids, make)
        (want,) = score_models([parts], data, reg.task("t1").spec, cfg.min_cell_size)
        assert want is not None and got.strata == want.strata
        assert len(parent_rec.block_ids) == 2


def test_a_round_of_a_grouped_version_is_scored_through_modality_blocks_of_fold_copies(
    consortium: Consortium, tmp_path: Path
) -> None:
    """Hierarchical Lego in LegoFuse: a round of a grouped version trains the two modality
    blocks only, and a site scores a patient of fold k through the LegoFuse of the modality
    blocks holding its fold-k copies, with the fold run's change."""
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        cfg = cross_fitted_site(consortium, "hosp-x", address, tmp_path)
        cross_fitted_site(consortium, "hosp-y", address, tmp_path, seed=6)
        reg = running.registry
        parent = reg.merge("t1", evaluate=False, layout="modality")
        assert parent.recipe.groups and len(set(parent.recipe.groups)) == 2
        parent_rec, start, _ = starting_model(reg, parent.model_id, FuseConfig())
        assert len(start.encoders) == 2  # M modality blocks, not the 4 site blocks
        names, state, runs, verdict = judged_round(consortium, address, cfg, reg, parent_rec, start)
        assert verdict is not None and verdict.sites == ("hosp-x",)
        got = verdict.scores["hosp-x"]

        data = load_site_folder(cfg.data)
        make = moved(
            lambda blocks: parent_rec.recipe.fused().make(blocks, "stack"), runs, state, names
        )
        parts = by_fold(reg, cfg, data, parent_rec.block_ids, make)
        (want,) = score_models([parts], data, reg.task("t1").spec, cfg.min_cell_size)
        assert want is not None and got.patients == want.patients == 90
        assert abs(got.metric - want.metric) < 2e-3  # the fold copies swapped in linearly


def by_fold(
    reg: Any, cfg: Any, data: Any, ids: Sequence[str], make: Callable[[list[Any]], Any]
) -> list[tuple[np.ndarray, tuple[Any, list[str]]]]:
    """By hand, for fold k = 0, 1, 2 of ``cfg``'s site: its fold-k patients and ``make`` of the
    blocks ``ids`` with the site's fold-k copies in its own released blocks' places."""
    released = dict(zip(ids, start_blocks(reg, ids), strict=True))
    fold_of = site_folds(data, 3, cfg.train.seed)
    mine = {
        i: load_fold_copies(fold_folder(cfg.state, i)) for i in ids if reg.block(i).site == cfg.site
    }
    parts = []
    for k in range(3):
        model = make([mine[i].blocks[k] if i in mine else released[i] for i in ids])
        parts.append((np.flatnonzero(fold_of == k), (model, model.modalities)))
    return parts


def moved(
    build: Callable[[list[Any]], Any],
    runs: list[dict[str, torch.Tensor]],
    state: dict[str, torch.Tensor],
    names: list[str],
) -> Callable[[list[Any]], Any]:
    """A ``make`` for :func:`by_fold`: ``build`` of fold k's blocks, its trainable tensors moved by
    fold run k's change (``runs[1 + k]`` minus the start ``state``), in evaluation mode."""
    k_runs = iter(runs[1:])

    def make(blocks: list[Any]) -> Any:
        model, run = build(blocks), next(k_runs)
        now = model.state_dict()
        model.load_state_dict(
            {n: now[n] + (run[n] - state[n]) if n in names else now[n] for n in now}
        )
        return model.eval()

    return make


def judged_round(
    consortium: Consortium, address: str, cfg: Any, reg: Any, parent_rec: Any, start: Any
) -> tuple[list[str], dict[str, torch.Tensor], list[dict[str, torch.Tensor]], Any]:
    """A round's judge with ``cfg``'s site answering: the full run and three fold runs, fold run
    k moved by 0.01 (k + 1) from the start; the trainable names, the start, the runs, the
    verdict."""
    names = trainable_names(start)
    state = {k: v.detach().clone() for k, v in start.state_dict().items()}
    runs = [state] + [
        {k: (v + 0.01 * (i + 1) if k in names else v) for k, v in state.items()} for i in range(3)
    ]
    done = threading.Event()
    worker = threading.Thread(target=lambda: answer_until([cfg], consortium, address, done))
    worker.start()
    try:
        verdict = RoundJudge(reg, reg.task("t1"), parent_rec, start, "stack", 20.0)(1, runs)
    finally:
        done.set()
        worker.join(30)
    return names, state, runs, verdict


def start_blocks(reg: Any, ids: tuple[str, ...]) -> list[LegoBlock]:
    from common.artifacts import build_block, parse_weights
    from common.serde import manifest_from_bytes

    out = []
    for i in ids:
        m = manifest_from_bytes(reg.block(i).manifest)
        out.append(build_block(m, parse_weights(reg.store.blobs.read(i), m)))
    return out


def test_a_cross_fitting_site_trains_a_fold_run_per_fold_on_the_patients_outside_it(
    consortium: Consortium, tmp_path: Path
) -> None:
    from site_client.fuse_client import SiteFailure, round_data

    with evaluating(consortium, tmp_path, deadline_s=5) as (address, _):
        cfg = cross_fitted_site(consortium, "hosp-x", address, tmp_path)
        data = load_site_folder(cfg.data)
        full, folds = round_data(cfg, data, ["genes", "clinical"], 3)
        fold_of = site_folds(data, 3, cfg.train.seed)
        assert len(full) == 90 and [len(f) for f in folds] == [
            int((fold_of != k).sum()) for k in range(3)
        ]
        assert all(
            not set(f.ids) & {p for p, k2 in zip(data.ids, fold_of, strict=True) if k2 == k}
            for k, f in enumerate(folds)
        )
        with pytest.raises(SiteFailure, match="cross-fits with \\[evaluation\\] folds = 3"):
            round_data(cfg, data, ["genes", "clinical"], 0)
        split = replace(cfg, evaluation=SiteEvaluation(folds=0))
        train, same = round_data(split, data, ["genes", "clinical"], 3)
        assert len(train) < 90 and all(
            s is train for s in same
        )  # a validation split: every run on its training patients
        assert torch.is_tensor(full.modalities["genes"].x)


def test_a_site_whose_folds_cannot_each_hold_an_event_declines_and_says_why(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import logging

    from common.evaluation.candidates import EvaluationJob
    from site_client.evaluate import Ledger, answer
    from tests.coordinator.conftest import TASK
    from tests.coordinator.test_fuse_rounds import paired_data

    data = paired_data(60, 1)
    assert data.event is not None
    from site_client.config import SiteConfig

    # what answer() reads before it would build anything: no coordinator is called
    cfg = SiteConfig(
        path=tmp_path / "site.toml",
        site="hosp-q",
        modalities=("genes", "clinical"),
        paired=True,
        coordinator="127.0.0.1:1",
        insecure=False,
        data=tmp_path,
        task="t1",
        blocks=tmp_path / "b",
        state=tmp_path,
        tls=None,
        signing_key=tmp_path / "k",
        train=QUICK,
        flower=None,  # type: ignore[arg-type]
        node_key=tmp_path / "n",
        min_cell_size=1,
        evaluation=SiteEvaluation(folds=5),
    )
    job = EvaluationJob("t1-e1", "t1", "merge", (Candidate("u", "merge", "uniform", ("ab" * 32,)),))
    few = data.subset(np.arange(60))
    few.event[:] = False  # type: ignore[index]
    few.event[:4] = True  # type: ignore[index]
    with caplog.at_level(logging.WARNING, logger="mmlego.site"):
        report = answer(cfg, None, job, few, Ledger(cfg), TASK)  # type: ignore[arg-type]
    assert report.declined == "folds" and not report.scores
    assert (
        "[evaluation] folds = 5 is more folds than this site's smallest class (4 events"
        in caplog.text
    )
    fold_of = site_folds(data, 5, cfg.train.seed)
    held = data.subset(np.arange(60))
    for m in (
        held.modalities.values()
    ):  # every patient with an event outside fold 0 lacks the task's modalities
        m.present[(fold_of != 0) & held.event] = False  # type: ignore[operator]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmlego.site"):
        report = answer(cfg, None, job, held, Ledger(cfg), TASK)  # type: ignore[arg-type]
    assert (
        report.declined == "fold-without-event"
        and "fold(s) 1, 2, 3, 4 of the site's patients hold no event" in caplog.text
    )


def test_a_classification_fold_without_every_class_is_named() -> None:
    from common.records import TaskRecord
    from common.tasks import TaskSpec
    from site_client.evaluate import empty_folds
    from tests.coordinator.test_fuse_rounds import paired_data

    data = paired_data(30, 2)
    labelled = type(data)(
        "t", "classification", data.ids, data.modalities, label=np.arange(30) % 3, n_classes=3
    )
    task = TaskRecord(
        "c", TaskSpec("classification", n_classes=3), 4, 8, "2d", 0, ("genes", "clinical"), ""
    )
    fold_of = np.arange(30) % 3  # fold k holds class k only
    assert empty_folds(labelled, task, fold_of, 3) == [0, 1, 2]
    assert (
        empty_folds(labelled, task, np.arange(30) // 10 % 3, 3) == []
    )  # every fold holds every class
