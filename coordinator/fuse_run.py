"""A LegoFuse run on Flower, as the coordinator sees it: its settings as one dataclass (to and
from Flower's run config, and the app's default config), its record in the store (what the
operator reads back when ``flwr run`` ends: the version stored, or why none was), and the sites'
verdict on every round's global model (a federated evaluation job: the parent version and the
round's model, scored in the same job so their difference has a standard error)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from common.evaluation import CandidateScore, compare
from common.evaluation.candidates import Candidate
from common.fuse import FuseConfig
from common.fuse.federated import from_run_config, to_run_config
from common.fuse.history import RoundRecord, RoundValidation, history_from_json, history_to_json
from common.fuse.wire import layout, pack_runs, run_key, trainable_names
from common.records import FuseRun, ModelRecord, TaskRecord, utc_now

from .registry import Registry
from .store import FuseRunRecord, Store


@dataclass(frozen=True)
class RunSettings:
    """What a fuse run needs besides the training settings (:class:`common.fuse.FuseConfig`)."""

    model_id: str = ""  # the version the run starts from
    coordinator_config: str = ""  # the coordinator.toml whose store the ServerApp opens
    node_sites: str = ""  # "<node id>=<site>,...": who registered each node key
    # simulation engine: the JSON file naming the site of each partition id (no node keys there)
    partitions: str = ""
    run_key: str = ""  # the run's record in the store
    min_sites: int = 1
    # sites to wait for before the first round: paired ones, or with FuseConfig.sites "all" every
    # site holding one of the model's modalities
    expect_sites: int = 1
    round_timeout: float = 600.0
    discovery_timeout: float = 60.0
    dp_clipping_norm: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_delta: float = 1e-5
    # seconds the sites get to score each round (0: [evaluation] deadline_s)
    eval_deadline: float = 0.0
    unvalidated: int = 0  # 1: no scoring; all rounds run and the last is stored, marked unmeasured

    @classmethod
    def from_run_config(cls, rc: Mapping[str, object]) -> RunSettings:
        return from_run_config(cls, rc)

    def to_run_config(self) -> dict[str, str | int | float]:
        return to_run_config(self)


def app_config() -> str:
    """The ``[tool.flwr.app.config]`` table: every key either dataclass knows, with its default."""
    lines = []
    for k, v in {**RunSettings().to_run_config(), **FuseConfig().to_run_config()}.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}")
    return "\n".join(lines) + "\n"


# ---- the run's record ----------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    run_key: str
    state: str  # "running", "stored", "not-stored", "failed"
    model_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def begin(store: Store, key: str, parent_id: str) -> None:
    store.fuse_runs.begin(key, parent_id.rpartition("-v")[0], parent_id)


def progress(store: Store, key: str, history: Sequence[RoundRecord]) -> None:
    """The rounds so far (what the admin console and ``admin fuse`` show while the run goes on)."""
    detail = {"history": history_to_json(history)}
    store.fuse_runs.update(key, json.dumps(detail, sort_keys=True, default=str))


def finish(
    store: Store,
    key: str,
    state: str,
    model_id: str = "",
    history: Sequence[RoundRecord] | None = None,
    **detail: Any,
) -> None:
    """The run's outcome; the rounds recorded so far stay when ``history`` is None (a failed
    run)."""
    if history is not None:
        detail["history"] = history_to_json(history)
    else:
        before = read(store, key)
        if before is not None and "history" in before.detail:
            detail["history"] = before.detail["history"]  # kept as stored
    store.fuse_runs.update(
        key, json.dumps(detail, sort_keys=True, default=str), state, model_id, utc_now()
    )


def read(store: Store, key: str) -> RunRecord | None:
    row = store.fuse_runs.get(key)
    return (
        None
        if row is None
        else RunRecord(key, row.state, row.model_id, json.loads(row.detail or "{}"))
    )


def run(store: Store, key: str) -> FuseRun | None:
    """The fuse run of ``key`` with its rounds (as far as it went); None if none began."""
    row = store.fuse_runs.get(key)
    return None if row is None else as_fuse_run(row)


def runs(store: Store, task_id: str = "", limit: int = 50) -> list[FuseRun]:
    """Fuse runs, newest first, with their rounds (as far as they went)."""
    return [as_fuse_run(row) for row in store.fuse_runs.listing(task_id, limit)]


def as_fuse_run(row: FuseRunRecord) -> FuseRun:
    detail = json.loads(row.detail or "{}")
    rounds = history_from_json(detail.get("history", []))
    return FuseRun(
        row.run_key,
        row.task_id,
        row.parent_id,
        row.started_at,
        row.state,
        row.finished_at,
        row.model_id,
        str(detail.get("reason", "")),
        tuple(r.fuse_round() for r in rounds),
    )


# ---- judging rounds ------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The sites' scores of one round's global model beside the parent's, on the same sites."""

    job_id: str
    value: float  # the round's consortium metric
    parent: float  # the parent's, on the sites that scored both
    diff: float
    se_diff: float
    sites: tuple[str, ...]
    scores: dict[str, CandidateScore]  # site -> the round's score

    def bound(self, z: float) -> float:
        return self.diff - z * self.se_diff

    def summary(self) -> RoundValidation:
        """As the round's history keeps it (rounded to 6 digits)."""

        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return RoundValidation(
            self.job_id,
            r(self.value),
            r(self.parent),
            r(self.diff),
            r(self.se_diff),
            self.sites,
            {s: round(sc.metric, 6) for s, sc in sorted(self.scores.items())},
        )


class RoundJudge:
    """Opens one evaluation job per round (the parent version as reference, the round's model as
    a ``fuse-round`` candidate carrying its trainable tensors: the full run's, then each fold
    run's) and waits for the sites."""

    def __init__(
        self,
        registry: Registry,
        task: TaskRecord,
        parent: ModelRecord,
        start: torch.nn.Module,
        mode: str,
        deadline_s: float,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.registry, self.task, self.parent, self.mode = registry, task, parent, mode
        self.keys = trainable_names(start)
        self.layout = layout(
            {k: v.detach().cpu() for k, v in start.state_dict().items()}, self.keys
        )
        self.wait_s = registry.evaluations.deadline(deadline_s)
        self.stop = stop

    def __call__(self, round_: int, states: list[dict[str, torch.Tensor]]) -> Verdict | None:
        ev = self.registry.evaluations
        record = pack_runs(
            states, self.keys
        )  # the full run, then the fold runs: end to end in one blob
        data = b"".join(
            record[run_key(i)].numpy().astype("float32").tobytes() for i in range(len(states))
        )
        cid = f"round-{round_}"
        candidates = [
            Candidate(
                "parent", "version", f"parent {self.parent.model_id}", model_id=self.parent.model_id
            ),
            Candidate(
                cid,
                "fuse-round",
                f"round {round_}",
                model_id=self.parent.model_id,
                weights_sha256=hashlib.sha256(data).hexdigest(),
                weights_size=len(data),
                fuse_mode=self.mode,
                layout=self.layout,
                folds=len(states) - 1,
            ),
        ]
        job = ev.open(
            self.task, "fuse", candidates, self.wait_s, blobs={cid: data}, actor="flower-serverapp"
        )
        ev.wait(job.job_id, ev.expected(self.task), self.wait_s, self.stop)
        results, scores = ev.results(job), ev.scores(job.job_id)
        mine = results.get(cid)
        if mine is None or not math.isfinite(mine.diff):
            return None
        value, parent, common = compare(scores[cid], scores["parent"])
        return Verdict(
            job.job_id,
            value,
            parent,
            value - parent,
            mine.se_diff,
            common,
            {s: scores[cid][s] for s in common},
        )
