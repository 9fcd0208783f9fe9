"""A kept ``mmlego simulate`` run's stored versions scored again on its hospitals' test patients,
after the run: for studies on development seeds that replay a choice the run made (another z, the
other LegoFuse arm) and need the test scores of versions the report did not measure (a run with
``compare = false`` measures none).

The run folder holds what is needed: report.json (scenario and seed), the coordinator's store
(read from a copy) and every version pulled into ``models/``. The hospitals' test patients are
dealt again from the scenario and seed (``partition`` is deterministic: the same patients in the
same order as in the run); each hospital's are seen through its own modalities, as
``simulate``'s per-hospital views see them (those that have one of them). The scenario is the
built-in one the report names unless another (a name or a file) is given; ``--set`` changes other
than the seed do not change who holds which patient."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from common.artifacts import build_block, parse_weights
from common.artifacts.modelfile import load_model_folder
from common.data.dataset import MultimodalDataset
from common.evaluation.paired import TestSet
from common.evaluation.scoring import covered
from common.records import TaskRecord
from common.serde import manifest_from_bytes
from coordinator.recommend import recommend
from coordinator.store import Store

from .references import module_entry
from .scenario import Partition, load_scenario, partition

STORE = Path("coordinator") / "store"


class KeptRun:
    """A kept run opened for scoring (a context manager: the store copy and the partition's
    scratch files go at the end)."""

    def __init__(self, folder: Path, scenario: str = "") -> None:
        self.folder = folder
        self.report: dict[str, Any] = json.loads((folder / "report.json").read_text())
        self.tmp = tempfile.TemporaryDirectory(prefix="mmlego-rescore-")
        shutil.copytree(folder / STORE, Path(self.tmp.name) / "store")
        self.store = Store(Path(self.tmp.name) / "store", recover=False)
        task = self.store.task(self.report["task"])
        if task is None:
            raise ValueError(f"{folder}: its store has no task {self.report['task']!r}")
        self.task: TaskRecord = task
        name = scenario or self.report["scenario"]
        scale = re.fullmatch(r"scale-([0-9]+)", name)  # the scale scenario names its size
        scn = (load_scenario("scale", int(scale[1])) if scale else load_scenario(name)).with_seed(
            int(self.report["seed"])
        )
        self.part: Partition = partition(scn)
        self.views: dict[str, MultimodalDataset] = {}
        for s in scn.spec.sites:
            mods = [m for m in s.modalities if m in self.task.modalities]
            view = self.part.test[self.part.test_of[s.name]].select_modalities(mods)
            self.views[s.name] = view.subset(np.flatnonzero(covered(view, mods)))
        self._scores: dict[tuple[str, str], np.ndarray] = {}
        self._models: dict[str, Any] = {}

    def __enter__(self) -> KeptRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()
        self.part.close()
        self.tmp.cleanup()

    def scores(self, model_id: str, site: str) -> np.ndarray:
        """Version ``model_id``'s scores of ``site``'s test patients (kept once computed); a name
        given to :meth:`add` stands for that model."""
        key = (model_id, site)
        if key not in self._scores:
            if model_id not in self._models:
                self._models[model_id] = load_model_folder(self.folder / "models" / model_id)[0]
            model = self._models[model_id]
            entry = module_entry("rescore", model_id, model, list(model.modalities), self.task.spec)
            self._scores[key] = np.asarray(entry.predict(self.views[site]))
        return self._scores[key]

    def add(self, name: str, model: Any) -> None:
        """A model made after the run (e.g. another recipe over the run's blocks), scored under
        ``name`` as a stored version is."""
        self._models[name] = model

    def blocks(self) -> dict[str, Any]:
        """The run's accepted blocks (block id -> block), from its coordinator's store."""
        out = {}
        for r in self.store.blocks.latest(self.task.task_id):
            m = manifest_from_bytes(r.manifest)
            out[r.block_id] = build_block(m, parse_weights(self.store.blobs.read(r.block_id), m))
        return {k: b.eval() for k, b in out.items()}

    def recommended(self) -> dict[str, str]:
        """The version recommended to each hospital (site -> model id), as the run left it."""
        return {s: recommend(self.store, self.task.task_id, s).model.model_id for s in self.views}

    def test_set(self, chosen: dict[str, dict[str, str]]) -> TestSet:
        """Every hospital's test patients, one after another, scored by ``chosen``: a name -> the
        version each site's patients are scored by (site -> model id; every site in each)."""
        sites = sorted(self.views)
        targets: dict[str, list[np.ndarray]] = {}
        for s in sites:
            for k, v in self.views[s].targets().items():
                targets.setdefault(k, []).append(np.asarray(v))
        spec = self.task.spec
        return TestSet(
            spec.kind,
            spec.n_classes if spec.kind == "classification" else 0,
            np.concatenate([np.full(len(self.views[s]), s) for s in sites]),
            {k: np.concatenate(v) for k, v in targets.items()},
            {
                name: np.concatenate([self.scores(by_site[s], s) for s in sites])
                for name, by_site in chosen.items()
            },
        )
