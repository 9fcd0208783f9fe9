"""Federated evaluation over real mutual TLS on loopback: sites receive jobs, rebuild every
candidate from what they verify themselves, score them on their validation patients and send pair
counts; the coordinator keeps only reports that can be, publishes the candidate the scores
support, records the scores with the version, recommends the best version, and has the sites
score a LegoFuse round's model. Every refusal has its status and leaves the store as it was."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.client import CallError, RegistryClient
from common.data.export import export_site_folder
from common.data.sitefolder import load_site_folder
from common.evaluation import CandidateScore, PairCounts
from common.evaluation.candidates import Candidate, SiteReport
from common.evaluation.stacking import StackStats
from common.fuse import FuseConfig
from common.fuse.wire import FLAT, layout, pack, trainable_names
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.sitetoml import EvaluationSection as SiteEvaluation
from coordinator.config import EvaluationSection
from coordinator.errors import RegistryError
from coordinator.fuse_run import RoundJudge
from coordinator.fusing import starting_model
from coordinator.merging import store_recipe
from coordinator.server import Running, serve
from site_client.config import SiteConfig, load_site_config
from site_client.evaluate import Ledger, evaluate_pending
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.coordinator.test_fuse_rounds import paired_data, site_node


@contextmanager
def evaluating(
    consortium: Consortium, tmp_path: Path, deadline_s: float = 60.0
) -> Iterator[tuple[str, Running]]:
    cfg = consortium.config(
        store=tmp_path / "store", evaluation=EvaluationSection(deadline_s=deadline_s)
    )
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
        yield address, running


def site(
    consortium: Consortium,
    name: str,
    address: str,
    tmp_path: Path,
    n: int = 160,
    seed: int = 0,
    **evaluation: Any,
) -> SiteConfig:
    """A site with real data (paired genes + clinical), its own validation patients drawn from
    it."""
    export_site_folder(paired_data(n, seed), tmp_path / f"data-{name}")
    toml = Path(
        site_node(consortium, name, address, tmp_path / f"data-{name}", tmp_path / f"home-{name}")[
            "site-config"
        ]
    )
    cfg = load_site_config(toml)
    return (
        replace(cfg, task="t1", evaluation=SiteEvaluation(**{"folds": 0, **evaluation}))
        if evaluation
        else replace(cfg, task="t1")
    )


def push_blocks(consortium: Consortium, address: str, tmp_path: Path) -> None:
    with (
        RegistryClient(address, consortium.tls("hosp-a")) as a,
        RegistryClient(address, consortium.tls("hosp-b")) as b,
    ):
        a.push(signed_block(consortium, "hosp-a", tmp_path / "ba", modality="genes", seed=1))
        b.push(signed_block(consortium, "hosp-b", tmp_path / "bb", modality="clinical", seed=2))


def answer_until(
    cfgs: list[SiteConfig], consortium: Consortium, address: str, done: threading.Event
) -> list[Any]:
    """What each site's daemon does: answer pending jobs, until ``done``."""
    answers: list[Any] = []
    while not done.is_set():
        for cfg in cfgs:
            with RegistryClient(address, consortium.tls(cfg.site)) as client:
                answers += evaluate_pending(cfg, client, load_site_folder(cfg.data))
        time.sleep(0.2)
    return answers


def rows(running: Running, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(running.registry.store.root / "registry.sqlite") as con:
        return list(con.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))


def test_merge_auto_is_measured_by_the_sites_and_its_scores_recommend_it(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path) as (address, running):
        push_blocks(consortium, address, tmp_path)
        sites = [
            site(consortium, "hosp-b", address, tmp_path, seed=3),
            site(consortium, "hosp-c", address, tmp_path, seed=4),
        ]
        with RegistryClient(address, consortium.tls("hosp-a")) as a:
            # hosp-a is known and expected too: it declines (it has no data with the task's outcome
            # here)
            a.tasks()
        done = threading.Event()
        worker = threading.Thread(
            target=lambda: out.extend(answer_until(sites, consortium, address, done))
        )
        out: list[Any] = []
        worker.start()
        t0 = time.monotonic()
        try:
            with RegistryClient(address, consortium.tls("ops")) as admin:
                version = admin.merge("t1", policy="auto", deadline_s=20)
        finally:
            done.set()
            worker.join(30)
        waited = time.monotonic() - t0
        v = version.card["validation"]
        assert (
            v["evaluated"]
            and set(v["scored_by"]) == {"hosp-b", "hosp-c"}
            and v["silent"] == ["hosp-a"]
        )
        assert (
            19 <= waited < 40
        )  # hosp-a never answered: the merge waited for it, not much longer than the deadline
        print(f"\nmerge with a silent site and a 20 s deadline: {waited:.1f} s")
        cands = {r["candidate"]: r for r in v["candidates"]}
        # stacked weights were fitted with the sites first (a stack job per Newton step), and
        # proposed beside the fixed family
        stack = v["stack"]
        assert stack["fitted"] and 1 <= len(stack["jobs"]) <= 4
        assert [f["grouping"] for f in stack["fits"]] == ["blocks"]
        assert {"uniform", "ensemble", "alone-0", "alone-1"} <= set(cands) and v["chosen"] in (
            "uniform",
            "ensemble",
            "stacked-blocks",
            "stacked-blocks-ensemble",
        )
        assert cands["uniform"]["value"] is not None and cands["uniform"]["patients"] > 0
        assert (
            set(v["per_site"]) == {"hosp-b", "hosp-c"}
            and version.metrics["val_metric"] == cands[v["chosen"]]["value"]
        )
        assert {(r[0], r[1]) for r in rows(running, "model_scores")} == {
            (version.model_id, "hosp-b"),
            (version.model_id, "hosp-c"),
        }
        with RegistryClient(address, consortium.tls("hosp-b")) as client:
            rec = client.recommended("t1")
        assert (
            rec.model.model_id == version.model_id
            and abs(rec.metric - version.metrics["val_metric"]) < 1e-6
        )
        booked = len(cands) + len(stack["jobs"])  # a stack job is one query
        assert len(Ledger(sites[0]).used("t1")) == booked  # every distinct candidate scored

        # the operator asks the sites to score the stored version again
        done.clear()
        worker = threading.Thread(
            target=lambda: out.extend(answer_until(sites, consortium, address, done))
        )
        worker.start()
        try:
            with RegistryClient(address, consortium.tls("ops")) as admin:
                status, results = admin.evaluate([version.model_id], deadline_s=20)
        finally:
            done.set()
            worker.join(30)
        assert set(status.reported) == {"hosp-b", "hosp-c"} and results[
            "v0"
        ].value == pytest.approx(rec.metric)
        assert len(Ledger(sites[0]).used("t1")) == booked + 1  # a stored version is a new one


def test_a_site_declines_past_its_query_budget_and_below_its_minimum_cell(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path, deadline_s=5) as (address, running):
        push_blocks(consortium, address, tmp_path)
        tight = site(consortium, "hosp-b", address, tmp_path, seed=3, max_eval_queries=3)
        small = site(
            consortium, "hosp-c", address, tmp_path, n=30, seed=4
        )  # 4-5 validation patients: below 5
        blocks = [b.block_id for b in running.registry.blocks("t1")]
        job = running.registry.evaluations.open(
            running.registry.task("t1"),
            "merge",
            [
                Candidate("c0", "merge", "uniform", tuple(blocks)),
                Candidate("c1", "ensemble", "ensemble", tuple(blocks)),
                Candidate("c2", "merge", "one", (blocks[0],)),
                Candidate("c3", "merge", "other", (blocks[1],)),
            ],
            5,
        )
        for cfg in (tight, small):
            with RegistryClient(address, consortium.tls(cfg.site)) as client:
                (answer,) = evaluate_pending(cfg, client, load_site_folder(cfg.data))
            assert answer.job_id == job.job_id
        st = running.registry.evaluations.status(job.job_id)
        assert st.declined == ("hosp-b", "hosp-c") and not st.reported
        assert rows(running, "eval_scores") == []
        assert Ledger(tight).used("t1") == set()  # nothing left the site, nothing was booked

        # a site whose evaluation is switched off declines, and is waited for no more until it
        # answers again (it still receives the jobs when it asks)
        ev, task = running.registry.evaluations, running.registry.task("t1")
        off = site(consortium, "hosp-a", address, tmp_path, seed=5, enabled=False)
        assert "hosp-a" in ev.expected(task)

        def unread() -> Any:
            raise AssertionError("a site with evaluation off reads no data")

        with RegistryClient(address, consortium.tls("hosp-a")) as client:
            (answer,) = evaluate_pending(off, client, unread)
            assert answer.declined == "disabled"
            assert ev.expected(task) == {"hosp-b", "hosp-c"}
            again = ev.open(task, "merge", job.candidates[:2], 5)
            on = replace(off, evaluation=off.evaluation.model_copy(update={"enabled": True}))
            (answer,) = evaluate_pending(on, client, load_site_folder(on.data))
        assert answer.job_id == again.job_id and answer.scored == 2
        assert "hosp-a" in ev.expected(task)


def test_a_job_asks_only_its_panel_and_closes_when_the_panel_answered(
    consortium: Consortium, tmp_path: Path
) -> None:
    """[evaluation] sites_per_job: a job asks at most that many of the expected sites (stratified
    by the modalities they hold, the largest first); the others do not receive it, and waiting
    ends as soon as the panel answered, long before the deadline."""
    with evaluating(consortium, tmp_path, deadline_s=60) as (address, running):
        push_blocks(consortium, address, tmp_path)
        a = site(consortium, "hosp-a", address, tmp_path, seed=1)
        b = site(consortium, "hosp-b", address, tmp_path, seed=2)
        ev, task = running.registry.evaluations, running.registry.task("t1")
        ev.settings = ev.settings.model_copy(update={"sites_per_job": 1})
        asked = ev.panel(task)
        assert len(asked) == 1 and set(asked) <= ev.expected(task) == {"hosp-a", "hosp-b"}
        blocks = tuple(b.block_id for b in running.registry.blocks("t1"))
        job = ev.open(task, "merge", [Candidate("u", "merge", "uniform", blocks)], 60)
        assert job.sites == asked
        (chosen,) = asked
        other = b if chosen == "hosp-a" else a
        me = a if chosen == "hosp-a" else b
        with RegistryClient(address, consortium.tls(other.site)) as client:
            assert client.pending_evaluations("t1") == []  # not asked: not delivered
        with RegistryClient(address, consortium.tls(me.site)) as client:
            (answer,) = evaluate_pending(me, client, load_site_folder(me.data))
        assert answer.job_id == job.job_id
        t0 = time.monotonic()
        st = ev.wait(job.job_id, ev.expected(task), 60)
        assert time.monotonic() - t0 < 5 and set(st.reported) | set(st.declined) == {chosen}
        # every site again when the setting is 0
        ev.settings = ev.settings.model_copy(update={"sites_per_job": 0})
        assert ev.panel(task) == ()
        assert ev.open(task, "merge", [Candidate("u2", "merge", "uniform", blocks)], 1).sites == ()


def test_reports_that_cannot_be_are_refused_and_nothing_is_kept(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        push_blocks(consortium, address, tmp_path)
        blocks = tuple(b.block_id for b in running.registry.blocks("t1"))
        reg = running.registry
        job = reg.evaluations.open(
            reg.task("t1"),
            "merge",
            [
                Candidate("c0", "merge", "uniform", blocks),
                Candidate("c1", "ensemble", "ensemble", blocks),
            ],
            30,
        )
        good = CandidateScore((PairCounts(30, 12, 1),), 12, 6, 0.004, 0.001)
        with (
            RegistryClient(address, consortium.tls("hosp-b")) as b,
            RegistryClient(address, consortium.tls("hosp-c")) as c,
        ):

            def code(client: RegistryClient, report: SiteReport) -> grpc.StatusCode:
                try:
                    client.report(report)
                except CallError as exc:
                    return exc.code
                return grpc.StatusCode.OK

            assert (
                code(b, SiteReport(job.job_id, {"c0": good})) == grpc.StatusCode.FAILED_PRECONDITION
            )  # never delivered
            assert [j.job_id for j in b.pending_evaluations("t1")] == [job.job_id]
            before = (rows(running, "eval_reports"), rows(running, "eval_scores"))
            bad = {
                "negative count": SiteReport(
                    job.job_id, {"c0": replace(good, strata=(PairCounts(-1, 12, 1),))}
                ),
                "more pairs than n(n-1)/2": SiteReport(
                    job.job_id, {"c0": replace(good, strata=(PairCounts(300, 0, 0),))}
                ),
                "wrong number of strata": SiteReport(
                    job.job_id, {"c0": replace(good, strata=(PairCounts(3, 1, 0),) * 2)}
                ),
                "unknown candidate": SiteReport(job.job_id, {"c9": good}),
                "free-text decline": SiteReport(job.job_id, {}, "patient 7 died"),
                "events above patients": SiteReport(job.job_id, {"c0": replace(good, events=40)}),
                "a variance out of range": SiteReport(
                    job.job_id, {"c0": replace(good, var_metric=3.0)}
                ),
            }
            for what, report in bad.items():
                assert code(b, report) == grpc.StatusCode.INVALID_ARGUMENT, what
            assert code(b, SiteReport("t1-e99", {"c0": good})) == grpc.StatusCode.NOT_FOUND
            assert (rows(running, "eval_reports"), rows(running, "eval_scores")) == before
            assert code(b, SiteReport(job.job_id, {"c0": good, "c1": good})) == grpc.StatusCode.OK
            assert (
                code(b, SiteReport(job.job_id, {"c0": good})) == grpc.StatusCode.FAILED_PRECONDITION
            )  # twice
            with pytest.raises(CallError) as err:
                c.download_candidate(job.job_id, "c0", "ab" * 32)
            assert (
                err.value.code == grpc.StatusCode.NOT_FOUND
            )  # a recipe carries no weights of its own
            c.pending_evaluations("t1")
            reg.withdraw(
                "hosp-c", "left", "ops"
            )  # a withdrawn site's scores do not count: refused, and no more jobs
            assert (
                code(c, SiteReport(job.job_id, {"c0": good})) == grpc.StatusCode.FAILED_PRECONDITION
            )
            assert c.pending_evaluations("t1") == []
            reg.evaluations.wait(job.job_id, set(), 0.0)  # closed
            assert (
                code(b, SiteReport(job.job_id, {"c1": good})) == grpc.StatusCode.FAILED_PRECONDITION
            )
        assert len(rows(running, "eval_scores")) == 2


def test_unknown_recipes_operators_and_weights_are_one_message(
    consortium: Consortium, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from common.cli import add_plugins, app

    with evaluating(consortium, tmp_path, deadline_s=5) as (address, _):
        push_blocks(consortium, address, tmp_path)
        with RegistryClient(address, consortium.tls("ops")) as admin:
            for kw, message in (
                ({"policy": "best"}, "unknown recipe 'best'; known: uniform, ensemble, auto"),
                (
                    {"latent_merge": "nope"},
                    "unknown latent merge 'nope'; known: arithmetic, harmonic",
                ),
                ({"head_merge": "nope"}, "unknown head merge 'nope'; known: linear, spherical"),
            ):
                with pytest.raises(CallError) as err:
                    admin.merge("t1", **kw)
                assert (
                    err.value.code == grpc.StatusCode.INVALID_ARGUMENT
                    and message in err.value.message
                )
            for bad in (float("nan"), -1.0):
                with pytest.raises(CallError) as err:
                    admin.call("Merge", pb.MergeRequest(task_id="t1", deadline_s=bad), timeout=30)
                assert (
                    err.value.code == grpc.StatusCode.INVALID_ARGUMENT
                    and "deadline_s must be >= 0" in err.value.message
                )
    conf = consortium.coordinator_toml(tmp_path / "c.toml", "127.0.0.1:0")
    add_plugins()
    for args, message in (
        (["--latent-merge", "nope"], "unknown latent merge 'nope'"),
        (["--recipe", "x"], "unknown recipe 'x'"),
    ):
        out = CliRunner().invoke(
            app,
            [
                "coordinator",
                "merge",
                "--task",
                "t1",
                "--config",
                str(conf),
                "--deadline",
                "0",
                *args,
            ],
        )
        assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output, (
            out.output
        )


def test_the_sites_score_a_lego_fuse_round_against_its_parent(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        push_blocks(consortium, address, tmp_path)
        reg = running.registry
        parent = reg.merge("t1", evaluate=False)
        parent_rec, start, _ = starting_model(reg, parent.model_id, FuseConfig())
        sites = [
            site(consortium, "hosp-b", address, tmp_path, seed=3),
            site(consortium, "hosp-c", address, tmp_path, seed=4, score_fused=False),
        ]
        with RegistryClient(address, consortium.tls("hosp-a")) as a:
            a.tasks()
        done = threading.Event()
        out: list[Any] = []
        worker = threading.Thread(
            target=lambda: out.extend(answer_until(sites, consortium, address, done))
        )
        worker.start()
        try:
            judge = RoundJudge(reg, reg.task("t1"), parent_rec, start, "stack", 8.0)
            state = {k: v.detach().clone() for k, v in start.state_dict().items()}
            verdict = judge(1, [state])
        finally:
            done.set()
            worker.join(30)
        assert verdict is not None and verdict.sites == (
            "hosp-b",
        )  # hosp-c does not score fused models
        assert abs(verdict.value - verdict.parent - verdict.diff) < 1e-12 and verdict.se_diff >= 0
        job = reg.evaluations.statuses("t1")[0].job
        weights = reg.store.blobs.read(job.candidates[1].weights_sha256)
        keys = trainable_names(start)
        assert (
            weights == pack(state, keys)[FLAT].numpy().tobytes()
        )  # the round's tensors, and only them
        assert job.candidates[1].layout == layout(
            {k: v for k, v in start.state_dict().items()}, keys
        )
        assert hashlib.sha256(weights).hexdigest() in {r[0] for r in rows(running, "eval_blobs")}

        # a round whose tensors do not fit the LegoFuse of its version's blocks is not scored; the
        # rest of the job is
        odd = reg.evaluations.open(
            reg.task("t1"),
            "fuse",
            [job.candidates[0], replace(job.candidates[1], layout="not-this")],
            10,
            blobs={job.candidates[1].candidate_id: weights},
        )
        with RegistryClient(address, consortium.tls("hosp-b")) as client:
            (answer,) = evaluate_pending(sites[0], client, load_site_folder(sites[0].data))
        assert answer.job_id == odd.job_id and answer.scored == 1
        assert set(reg.evaluations.scores(odd.job_id)) == {"parent"}


def test_stack_sums_that_cannot_be_are_refused_and_a_site_sends_them_per_fold(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path, deadline_s=30) as (address, running):
        push_blocks(consortium, address, tmp_path)
        blocks = tuple(b.block_id for b in running.registry.blocks("t1"))
        reg = running.registry
        parts = [
            Candidate("part-0", "merge", "genes", blocks[:1]),
            Candidate("part-1", "merge", "clinical", blocks[1:]),
        ]
        with pytest.raises(RegistryError, match="2 finite weights"):
            reg.evaluations.open(reg.task("t1"), "stack", parts, 30, points=[(1.0,)])
        job = reg.evaluations.open(reg.task("t1"), "stack", parts, 30, points=[(1.0, 1.0)])
        good = StackStats(0, -1, 40, 10, 12.0, (0.1, 0.2), (2.0, 0.5, 0.5, 1.0))
        with RegistryClient(address, consortium.tls("hosp-c")) as c:
            c.pending_evaluations("t1")
            bad = {
                "asymmetric Hessian": replace(good, hessian=(2.0, 0.5, 0.4, 1.0)),
                "gradient of one": replace(good, gradient=(0.1,)),
                "unknown point": replace(good, point=3),
                "NaN loss": replace(good, loss=float("nan")),
            }
            for what, stats in bad.items():
                with pytest.raises(CallError) as err:
                    c.report(SiteReport(job.job_id, stack=(stats,)))
                assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT, what
            with pytest.raises(CallError) as err:  # a stack job takes sums, not scores
                c.report(
                    SiteReport(
                        job.job_id,
                        {"part-0": CandidateScore((PairCounts(3, 1, 0),), 12, 6, 0.0, 0.0)},
                    )
                )
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert rows(running, "eval_stack") == [] and rows(running, "eval_reports") == []
        # a cross-fitting site (with no block of its own here) scores every patient with both
        # components and sends each fold's sums
        cfg = site(consortium, "hosp-c", address, tmp_path, seed=3, folds=5)
        with RegistryClient(address, consortium.tls("hosp-c")) as c:
            (answer,) = evaluate_pending(cfg, c, load_site_folder(cfg.data))
        assert answer.declined == "" and answer.scored == 0
        stats = reg.evaluations.stack(job.job_id)["hosp-c"]
        assert sorted(s.fold for s in stats) == [0, 1, 2, 3, 4]
        assert sum(s.patients for s in stats) == 160 and all(s.events >= 5 for s in stats)
        assert len(Ledger(cfg).used("t1")) == 1  # the job is one query
        # the next step's job (other weights, same components) is answered from the site's cache
        # of its out-of-fold predictions, with the sums of the new point
        assert len(list((cfg.state / "stack-cache").glob("*.npz"))) == 1
        nxt = reg.evaluations.open(reg.task("t1"), "stack", parts, 30, points=[(2.0, 0.5)])
        with RegistryClient(address, consortium.tls("hosp-c")) as c:
            (again,) = evaluate_pending(cfg, c, load_site_folder(cfg.data))
        assert again.job_id == nxt.job_id and again.declined == ""
        moved = reg.evaluations.stack(nxt.job_id)["hosp-c"]
        assert [s.patients for s in moved] == [s.patients for s in stats]
        assert [s.loss for s in moved] != [s.loss for s in stats]
        # data that changed since (a file rewritten) is scored again, not read from the cache
        cached = {p.name for p in (cfg.state / "stack-cache").glob("*.npz")}
        some = next(f for f in sorted(cfg.data.rglob("*")) if f.is_file())
        os.utime(some, ns=(some.stat().st_atime_ns, some.stat().st_mtime_ns + 10**9))
        reg.evaluations.open(reg.task("t1"), "stack", parts, 30, points=[(1.0, 2.0)])
        with RegistryClient(address, consortium.tls("hosp-c")) as c:
            (third,) = evaluate_pending(cfg, c, load_site_folder(cfg.data))
        assert third.declined == ""
        assert {p.name for p in (cfg.state / "stack-cache").glob("*.npz")} != cached


def test_a_site_is_recommended_what_its_own_evidence_favours_the_consortium_what_serves_all(
    consortium: Consortium, tmp_path: Path
) -> None:
    with evaluating(consortium, tmp_path) as (address, running):
        push_blocks(consortium, address, tmp_path)
        reg = running.registry
        records = reg.store.blocks.latest("t1")
        genes = next(r for r in records if r.modality == "genes")
        both = tuple(r.block_id for r in records)
        task = reg.task("t1")

        def score(c: int, d: int, patients: int, var_diff: float) -> CandidateScore:
            return CandidateScore((PairCounts(c, d, 0),), patients, 20, 0.0004, var_diff)

        def version(cand: Candidate, scores: dict[str, CandidateScore], job: str) -> str:
            return store_recipe(reg.store, task, records, cand, "ops", {}, scores, job).model_id

        # one merge job: the uniform merge of both blocks (its reference), the genes block alone
        merged = version(
            Candidate("uniform", "merge", "uniform", both),
            {"hosp-b": score(600, 400, 80, 0.0), "hosp-c": score(600, 400, 80, 0.0)},
            "t1-e1",
        )
        alone = version(
            Candidate("alone-0", "merge", "genes alone", (genes.block_id,)),
            {
                "hosp-c": score(700, 300, 80, 0.0004),  # +0.10, se 0.02: beyond doubt
                "hosp-b": score(800, 200, 50, 0.0004),  # better, on fewer of its patients
            },
            "t1-e1",
        )
        with RegistryClient(address, consortium.tls("hosp-c")) as c:
            ours = c.recommended("t1")
            assert ours.model.model_id == merged and ours.site == ""  # serves every modality
            mine = c.recommended("t1", "hosp-c")
            assert mine.model.model_id == alone and mine.site == "hosp-c"
            assert "beats" in mine.reason and mine.sites == ("hosp-c",)
            other = c.recommended("t1", "hosp-b")
            assert other.model.model_id == merged and "no version beats it" in other.reason
            with pytest.raises(CallError) as err:
                c.recommended("t1", "hosp-zz")
            assert err.value.code == grpc.StatusCode.NOT_FOUND
        # a gain within its standard errors leaves the site with the consortium's version
        close = version(
            Candidate("alone-9", "ensemble", "genes alone", (genes.block_id,)),
            {"hosp-b": score(610, 390, 80, 0.0009)},  # +0.01, se 0.03
            "t1-e1",
        )
        assert reg.recommended("t1", "hosp-b").model.model_id == merged != close
