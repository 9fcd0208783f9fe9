"""The references of an earlier run of the same scenario and seed, reused instead of trained again.

Each hospital alone, FedAvg from scratch and the central families do not depend on how the
consortium merges, selects or fuses, and they take most of a run (ovarian-4: 430 of 690 s; slides-3
more). A researcher changing the federated side reruns it with ``--references-from`` an earlier
run: the references' test scores are read from that run's test-scores.npz and report.json, and
accepted only if they fit this run exactly: the same scenario and seed, every hospital's test
patients with the same targets in the same order, and, once this run's test sets are built, every
reused score array equal to the earlier run's on the same patients (summary and per hospital).
Anything else is a ValueError naming what differs; nothing is guessed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.data.dataset import MultimodalDataset
from common.evaluation.paired import TestSet

from .evidence import BaselineRow, LocalInfo, ReferenceInfo, ReferenceRow
from .references import Entry


@dataclass(frozen=True)
class Reused:
    """What an earlier run gives this one: the reference entries (each returns the earlier run's
    scores of a test set it scored whole, the same patients in the same order), each hospital's
    own model, how each was chosen, and the FedAvg rows."""

    source: Path
    entries: list[Entry]
    locals_: dict[str, Entry]
    local_info: dict[str, LocalInfo]
    baselines: dict[str, BaselineRow]
    earlier: dict[str, TestSet]  # "summary" and "site:NAME": the earlier run's test sets


@dataclass(frozen=True)
class _Scored:
    """An earlier run's test set (or one hospital's part of it): patients in order, their
    targets, every kind's scores, and the modalities the patients were scored through."""

    modalities: frozenset[str]
    site: np.ndarray
    targets: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]

    @classmethod
    def of(
        cls, modalities: Sequence[str], test: TestSet, rows: np.ndarray | None = None
    ) -> _Scored:
        pick = np.ones(len(test.site), dtype=bool) if rows is None else rows
        return cls(
            frozenset(modalities),
            np.asarray(test.site)[pick].astype(str),
            {k: np.asarray(v)[pick] for k, v in test.targets.items()},
            {k: np.asarray(v)[pick] for k, v in test.scores.items()},
        )

    def fits(self, data: MultimodalDataset) -> bool:
        """The same patients in the same order: the same hospitals, targets and modalities."""
        new = data.targets()
        return (
            frozenset(data.modalities) == self.modalities
            and len(data) == len(self.site)
            and np.array_equal(np.asarray(data.groups).astype(str), self.site)
            and set(new) == set(self.targets)
            and all(np.array_equal(np.asarray(new[k]), self.targets[k]) for k in new)
        )


def load(
    folder: Path,
    scenario: str,
    seed: int,
    views: dict[str, MultimodalDataset],
    summary_modalities: Sequence[str],
    modalities: Sequence[str],
    site_blocks: dict[str, list[str]],
) -> Reused:
    """The references of the run in ``folder`` for this run, whose hospitals' test patients are
    ``views`` (site -> its labelled test patients through its own modalities), whose summary test
    set reads ``summary_modalities``, with the task's ``modalities`` and each site's released
    block modalities."""
    from .render import SCORES, load_measured  # render imports the report, which imports this

    report_path, scores_path = folder / "report.json", folder / SCORES
    for p in (report_path, scores_path):
        if not p.is_file():
            raise ValueError(f"--references-from {folder}: {p.name} is missing")
    # the sections read one by one (not the whole Report): a run of an older report layout is
    # still a source, as long as these sections and its test scores are there
    d = json.loads(report_path.read_text())
    if (d.get("scenario"), d.get("seed")) != (scenario, seed):
        raise ValueError(
            f"--references-from {folder}: it ran {d.get('scenario')} seed {d.get('seed')}, "
            f"this run is {scenario} seed {seed}"
        )
    measured = load_measured(scores_path)
    summary = measured.summary
    if summary is None or not d.get("references") or not d.get("per_site"):
        raise ValueError(f"--references-from {folder}: that run measured no references")
    rows = {k: ReferenceRow.from_json(v) for k, v in d["references"].items()}
    per_site = [(r["site"], LocalInfo.from_json(r.get("local") or {})) for r in d["per_site"]]
    baselines = {k: BaselineRow.from_json(v) for k, v in d.get("baselines", {}).items()}
    # the earlier run scored the summary through the task's modalities, and each hospital's
    # patients again through its own; a score may depend on the whole batch scored at once (the
    # classical ceiling's scaling), so a test set is looked up whole: the summary, each
    # hospital's, then a hospital's part of the summary (where its own model scored it)
    scored = [_Scored.of(summary_modalities, summary)]
    for site, view in views.items():
        old = measured.per_site.get(site)
        mine = None if old is None else _Scored.of(list(view.modalities), old)
        if mine is None or not mine.fits(view):
            raise ValueError(
                f"--references-from {folder}: {site}'s test patients differ from that run's "
                "(another data version, split or scenario file)"
            )
        scored.append(mine)
    scored += [
        _Scored.of(summary_modalities, summary, np.asarray(summary.site) == site)
        for site in dict.fromkeys(np.asarray(summary.site).tolist())
    ]
    present = {k for t in scored for k in t.scores}

    def entry(kind: str, name: str, reads: Sequence[str], info: ReferenceInfo | None) -> Entry:
        def predict(data: MultimodalDataset) -> np.ndarray:
            for t in scored:
                if kind in t.scores and t.fits(data):
                    return t.scores[kind]
            raise ValueError(
                f"--references-from {folder}: that run scored no test set of these {len(data)} "
                f"patients with {kind}"
            )

        return Entry(kind, name, list(reads), predict, info)

    entries = [
        entry(kind, row.name, modalities, row.info)
        for kind, row in rows.items()
        if kind != "local" and kind in present
    ]
    locals_, local_info = {}, {}
    for site, info in per_site:
        if info is None or "local" not in present:
            continue
        alone = info.chosen.removesuffix(" block")
        reads = [alone] if info.chosen != alone else site_blocks.get(site, [])
        locals_[site] = entry("local", f"{site}: {info.chosen}", reads, None)
        local_info[site] = info
    return Reused(
        folder,
        entries,
        locals_,
        local_info,
        baselines,
        {"summary": summary, **{f"site:{s}": t for s, t in measured.per_site.items()}},
    )


def check(reused: Reused, name: str, now: TestSet | None) -> None:
    """Every reused score of this run's test set ``name`` ("summary" or "site:NAME") equals the
    earlier run's on the same patients; else ValueError."""
    before = reused.earlier.get(name)
    if now is None and before is None:
        return
    if now is None or before is None or len(now.site) != len(before.site):
        raise ValueError(
            f"--references-from {reused.source}: the {name} test set scores other patients "
            "than that run's"
        )
    kinds = [e.kind for e in reused.entries] + (["local"] if reused.locals_ else [])
    for kind in kinds:
        if kind in now.scores and not np.array_equal(
            np.asarray(now.scores[kind], dtype=np.float64),
            np.asarray(before.scores.get(kind, np.array([])), dtype=np.float64),
        ):
            raise ValueError(
                f"--references-from {reused.source}: {kind} on the {name} test set differs "
                "from that run's"
            )
