"""Scenario files of ``mmlego simulate``: which data, which hospital holds which modality, who
holds paired data, how much the hospitals' patients overlap, rounds, epochs and seeds; and the
split of every hospital's patients into those it holds (it trains, cross-fits and validates on
them) and its own held-out test patients, which no hospital trains on or chooses with.

    name = "nki70-3"
    dataset = "nki70"                 # a built-in dataset; or give every site its own `data` folder
    seed = 0                          # which test fold (seed % test_folds) and the training seeds
    test_folds = 5                    # seeds 0-4 test every patient once, on disjoint test sets
    folds = 5                         # the sites' cross-fitting ([evaluation] folds; 0: a
                                      # validation split)
    overlap = 0.0                     # fraction of patients that every site holds (its
                                      # modalities; never tested)
    rounds = 2   epochs = 1           # LegoFuse rounds and local epochs per round (0 rounds: no
                                      # fuse)
    fuse_sites = "paired"             # who trains in them: "paired" or "all" (every site)
    fuse_sites_per_round = 0          # > 0: at most this many of them train in each round
    hierarchy = "auto"                # the merge's recipes: "auto", "flat" or "modality"
    proximal_mu = 0.0                 # > 0: FedProx in them
    block_epochs = 30                 # at most, per site block (the epoch count is chosen out of
                                      # fold)
    [[sites]]
    name = "hosp-a"   modalities = ["genes"]   share = 1.0     # or group = "study16", or
                                                               # data = "folder"

A site with more than one modality holds them for the same patients (paired data). ``share``
splits the patients that no ``group`` took, in proportion. Who holds which patient depends on
``seed // test_folds`` only, so the seeds of one block of ``test_folds`` share the hospitals and
differ in the fold each hospital holds out. Built-in scenarios live in ``scenarios/``; ``scale``
is made for ``--sites N`` with synthetic data. ``mmlego simulate --set KEY=VALUE`` changes a
top-level setting of the scenario it runs (:meth:`Scenario.with_settings`)."""

from __future__ import annotations

import random
import shutil
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from common.data.dataset import ModalityData, MultimodalDataset, concat_datasets
from common.data.splits import FoldError, site_folds, strata_of
from common.pki.identity import check_name
from common.tomlconfig import ConfigError, Strict, read_toml

BUILTIN_DIR = Path(__file__).parent / "scenarios"
DEFAULT = "ovarian-4"


class SiteEntry(Strict):
    name: str
    modalities: list[str] = Field(min_length=1)
    group: str | None = None  # the patients of this group (study) of the dataset
    share: float | None = Field(
        default=None, gt=0
    )  # a share of the training patients no group took
    data: str | None = None  # the site's own data folder (data.toml), relative to the scenario file
    # the site answers evaluation jobs ([evaluation] enabled); false: it declines them
    evaluation: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> SiteEntry:
        check_name("site", self.name)
        for m in self.modalities:
            check_name("modality", m)
        if len(self.modalities) != len(set(self.modalities)):
            raise ValueError(f"site {self.name}: a modality is listed twice")
        if sum(x is not None for x in (self.group, self.share, self.data)) != 1 and not (
            self.data is not None and (self.group is None) != (self.share is None)
        ):
            raise ValueError(
                f"site {self.name}: give exactly one of group, share or data "
                "(or, with `export`, data and one of group or share)"
            )
        return self

    @property
    def paired(self) -> bool:
        return len(self.modalities) > 1


class SyntheticSection(Strict):
    """Synthetic survival data: modality m has ``features`` columns and a linear signal of
    strength ``signal[m]`` (0 = noise only); labelled synthetic wherever it is reported."""

    patients: int = Field(default=3000, ge=20)
    features: dict[str, int] = Field(default_factory=lambda: {"omics": 32, "clinical": 8})
    signal: dict[str, float] = Field(default_factory=lambda: {"omics": 1.0, "clinical": 0.6})


class SlidesSection(Strict):
    """A synthetic whole-slide-image cohort (common.data.slidecohort): per-slide HDF5 feature
    files (modality ``slides``, a bag) and a genes table (modality ``genes``); labelled
    synthetic."""

    slides: int = Field(default=320, ge=20)
    features: int = Field(default=256, ge=1)
    median_instances: int = Field(default=1000, ge=1)
    max_instances: int = Field(default=5000, ge=1)
    genes: int = Field(default=32, ge=1)
    train_instances: int = Field(
        default=2048, ge=0
    )  # the slides entry's max_instances (per bag, per epoch)


class ScenarioFile(Strict):
    name: str
    description: str = ""
    dataset: str | None = None
    synthetic: SyntheticSection | None = None
    slides: SlidesSection | None = None
    seed: int = 0
    overlap: float = Field(default=0.0, ge=0, lt=1)
    # each hospital's patients fall into this many test folds; seed s tests on fold s % test_folds,
    # so seeds 0..test_folds-1 test every patient once (their test sets are disjoint)
    test_folds: int = Field(default=5, ge=3, le=20)
    folds: int = Field(
        default=5, ge=0
    )  # every site's [evaluation] folds (cross-fitting); 0: a validation split
    val_fraction: float = Field(
        default=0.15, gt=0, lt=0.5
    )  # every site's [train] val_fraction (used with folds = 0)
    rounds: int = Field(
        default=6, ge=0
    )  # LegoFuse rounds at most (the best round on consortium validation is kept)
    patience_rounds: int = Field(
        default=2, ge=1
    )  # LegoFuse stops after this many rounds without a better validation metric
    epochs: int = Field(default=1, ge=1)
    block_epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=10, ge=1)
    batch_size: int = Field(
        default=32, ge=1
    )  # every site's [train] batch_size (blocks, LegoFuse rounds, references)
    fuse_mode: Literal["stack", "weave"] = "stack"
    # who trains in LegoFuse rounds (common.fuse_sites): "paired", the sites holding paired data;
    # "all", every site (each on its patients having one of the model's modalities)
    fuse_sites: Literal["paired", "all"] = "paired"
    fuse_sites_per_round: int = Field(default=0, ge=0)  # > 0: at most this many train per round
    # which recipes the merge considers (coordinator merge --hierarchy): "auto", "flat", "modality"
    hierarchy: Literal["auto", "flat", "modality"] = "auto"
    proximal_mu: float = Field(default=0.0, ge=0, allow_inf_nan=False)  # > 0: FedProx in them
    latent_rows: int = Field(default=16, ge=1)
    latent_dim: int = Field(default=64, ge=1)
    n_bins: int = Field(default=4, ge=2)
    compare: bool = True  # centralized runs and baselines in the report (off for scale runs)
    min_cell_size: int = Field(default=5, ge=1)  # every site's [privacy] min_cell_size
    block_epsilon: float | None = Field(
        default=None, gt=0, allow_inf_nan=False
    )  # set: every site trains DP blocks at this epsilon
    # > 0: an evaluation job asks at most this many sites (the coordinator's sites_per_job)
    eval_sites_per_job: int = Field(default=0, ge=0)
    eval_deadline_s: float = Field(
        default=300.0, gt=0
    )  # how long the coordinator waits for the sites' scores
    # a built-in dataset the sites' own data folders are written from (with `data` and group/share)
    export: str | None = None
    sites: list[SiteEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioFile:
        names = [s.name for s in self.sites]
        if len(names) != len(set(names)):
            raise ValueError("two sites have the same name")
        own = [s.data is not None for s in self.sites]
        sources = (
            (self.dataset is not None)
            + (self.synthetic is not None)
            + (self.slides is not None)
            + (all(own) and self.export is None)
            + (self.export is not None)
        )
        if sources != 1 or (any(own) and not all(own)):
            raise ValueError(
                "name one dataset: `dataset` (built-in), `[synthetic]`, "
                "`[slides]` (a synthetic slide cohort), a `data` folder for every site, "
                "or `export` (a built-in dataset written into every site's `data` folder)"
            )
        if self.folds == 1:
            raise ValueError("folds = 1 cannot cross-fit: use 0 (a validation split) or 2 or more")
        if self.overlap > 0 and self.folds:
            raise ValueError(
                "overlap > 0 needs folds = 0: "
                "a patient every site trains on cannot be scored out of fold "
                "(the sites' validation splits then leave the shared patients out)"
            )
        if self.block_epsilon is not None and (
            self.slides is not None or (all(own) and self.export is None)
        ):
            raise ValueError(
                "block_epsilon needs public ranges of every feature and data held in memory: "
                "a built-in `dataset`, `export` or `[synthetic]` "
                "(not `[slides]`: DP training of slide blocks is not supported yet; "
                "not site `data` folders: their ranges are not known)"
            )
        from common.data.builtin import BUILTIN

        for name in (self.dataset, self.export):
            if name is not None and name not in BUILTIN:
                raise ValueError(f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)}")
        return self


@dataclass(frozen=True)
class Scenario:
    spec: ScenarioFile
    source: Path | None  # the file it came from (None: made in code)

    @property
    def name(self) -> str:
        return self.spec.name

    def fuse_sites(self) -> list[SiteEntry]:
        """The sites that train in LegoFuse rounds: those with paired data, or with ``fuse_sites``
        "all" every site (each holds modalities of the task)."""
        if self.spec.fuse_sites == "all":
            return list(self.spec.sites)
        return [s for s in self.spec.sites if s.paired]

    def with_settings(self, settings: dict[str, str]) -> Scenario:
        """The same scenario with top-level settings changed (``--set KEY=VALUE``): each value is
        read as TOML (``3``, ``0.5``, ``true``, ``"all"``), else taken as text (``all``), and the
        whole scenario is checked again; ConfigError names an unknown key or a bad value."""
        known = set(ScenarioFile.model_fields) - {"sites", "synthetic", "slides"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(
                f"--set: unknown scenario setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        values: dict[str, object] = {}
        for key, text in settings.items():
            try:
                values[key] = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                values[key] = text
        try:
            spec = ScenarioFile.model_validate({**self.spec.model_dump(), **values})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise ConfigError(f"--set: {where}: {first['msg']}") from None
        return replace(self, spec=spec)

    def with_seed(self, seed: int) -> Scenario:
        """The same scenario with another seed (the split, who holds which patients, training)."""
        return replace(self, spec=self.spec.model_copy(update={"seed": seed}))

    def quick(self) -> Scenario:
        """A fast variant for CI and smoke runs: few epochs, a small latent, a short baseline."""
        slides = self.spec.slides
        if slides is not None:  # a smaller cohort: fewer, shorter, narrower slides
            slides = slides.model_copy(
                update={
                    "slides": min(slides.slides, 200),
                    "features": min(slides.features, 64),
                    "median_instances": min(slides.median_instances, 300),
                    "max_instances": min(slides.max_instances, 1500),
                    "train_instances": min(slides.train_instances or 256, 256),
                }
            )
        s = self.spec.model_copy(
            update={
                "block_epochs": min(self.spec.block_epochs, 4),
                "patience": 2,
                "latent_rows": 8,
                "latent_dim": 16,
                "rounds": min(self.spec.rounds, 2),
                "patience_rounds": 1,
                "slides": slides,
            }
        )
        return replace(self, spec=s)


def builtin_names() -> list[str]:
    return [*sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")), "scale"]


# sites of the scale scenario that answer evaluation jobs; the others have evaluation switched off
SCALE_SCORERS = 50
# paired sites of the scale scenario, at most (the sites a LegoFuse round trains on; a round's
# message carries the version's trainable weights: every block of a flat version, the modality
# blocks of a bounded one)
SCALE_PAIRED = 10


def scale_scenario(sites: int, patients_per_site: int = 120, quick: bool = False) -> Scenario:
    """``sites`` synthetic hospitals: alternately omics-only and clinical-only, and every tenth
    (at least one, at most :data:`SCALE_PAIRED`) holds both (paired). At most
    :data:`SCALE_SCORERS` of them, drawn with a fixed seed, score candidates and rounds on their
    validation patients (every site scores up to that many); the others decline evaluation jobs,
    as hospitals that switched it off do. Beyond 64 blocks the merge's candidates are the bounded
    ones (docs/EVALUATION.md section 5): what a scoring site runs per candidate depends on the
    modalities and at most 32 blocks of each, and it downloads and verifies at most 64 blocks
    of each modality (a modality block averages its modality's 64 largest at most)."""
    if sites < 2:
        raise ConfigError("the scale scenario needs --sites 2 or more")
    scorers = set(random.Random(0).sample(range(sites), min(sites, SCALE_SCORERS)))
    entries = []
    for i in range(sites):
        paired = (i % 10 == 9 and i // 10 < SCALE_PAIRED) or (sites < 10 and i == sites - 1)
        mods = ["omics", "clinical"] if paired else [("omics", "clinical")[i % 2]]
        entries.append(
            SiteEntry(name=f"site-{i + 1:03d}", modalities=mods, share=1.0, evaluation=i in scorers)
        )
    n = max(200, int(sites * patients_per_site / 0.7))
    spec = ScenarioFile(
        name=f"scale-{sites}",
        description=f"{sites} hospitals on synthetic data (scale run; "
        f"{len(scorers)} of them score evaluation jobs)",
        synthetic=SyntheticSection(patients=n),
        rounds=1,
        epochs=1,
        block_epochs=3 if quick else 10,
        patience=3,
        latent_rows=8,
        latent_dim=16,
        compare=False,
        sites=entries,
        folds=0,
    )  # a scale run measures time and memory: a validation split, as in docs/RESULTS.md section 11
    return Scenario(spec, None)


def load_scenario(name_or_file: str, sites: int | None = None) -> Scenario:
    """A built-in scenario by name, or a scenario file; ``sites`` only for ``scale``."""
    if name_or_file == "scale":
        return scale_scenario(sites or 10)
    if sites is not None:
        raise ConfigError("--sites goes with --scenario scale only")
    path = Path(name_or_file)
    if not path.suffix and (BUILTIN_DIR / f"{name_or_file}.toml").is_file():
        path = BUILTIN_DIR / f"{name_or_file}.toml"
    elif not path.is_file():
        raise ConfigError(
            f"{name_or_file}: no such scenario file or built-in scenario "
            f"(built-in: {', '.join(builtin_names())})"
        )
    return Scenario(read_toml(path, ScenarioFile), path)


# ---- the data ------------------------------------------------------------------------------------
@dataclass
class Partition:
    """Who holds what: each site's patients (its modalities only), which it trains, cross-fits and
    validates on; and each site's own held-out test patients (``test[test_of[site]]``), which
    every model is measured on and none is trained or chosen on. A built-in dataset's test
    patients keep every modality the dataset has (the report also looks at them through each
    site's own modalities)."""

    sites: dict[str, MultimodalDataset]
    test: list[MultimodalDataset]
    test_of: dict[str, int]  # site -> index of its own test part
    synthetic: bool
    # files the data is read from (a synthetic slide cohort); removed by close()
    scratch: Path | None = None

    def close(self) -> None:
        """Remove the scratch files (after the report: the test parts read slides from them)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def pooled(self) -> MultimodalDataset:
        """Every site's patients in one set, each with the modalities its site holds (the others
        absent), ``groups`` naming the site: what a central analyst pooling the consortium's data
        has."""
        parts: list[MultimodalDataset] = []
        seen: set[str] = set()
        for name, d in self.sites.items():
            d = d.subset(
                np.flatnonzero(~np.isin(d.ids, list(seen)))
            )  # a patient several sites hold (overlap) once
            seen.update(d.ids)
            d.groups, d.holdout = np.full(len(d), name), None
            parts.append(d)
        return concat_datasets(parts, union=True)


def synthetic_data(cfg: SyntheticSection, seed: int) -> MultimodalDataset:
    """Survival data whose log-hazard is a sum of one linear signal per modality."""
    rng = np.random.default_rng(seed)
    n = cfg.patients
    mods, risk = {}, np.zeros(n)
    for m, f in sorted(cfg.features.items()):
        x = rng.normal(size=(n, f)).astype(np.float32)
        w = rng.normal(size=f) / np.sqrt(f)
        risk += cfg.signal.get(m, 0.0) * (x @ w)
        mods[m] = ModalityData(
            "tabular",
            torch.from_numpy(x),
            torch.ones(n, dtype=torch.bool),
            [f"{m}_{j}" for j in range(f)],
        )
    t_event = rng.exponential(np.exp(-risk))
    t_censor = rng.exponential(np.median(t_event) * 1.5, size=n)
    time = np.minimum(t_event, t_censor).astype(np.float32) + 1e-3
    event = (t_event <= t_censor).astype(np.int64)
    return MultimodalDataset(
        "synthetic",
        "survival",
        [f"p{i:06d}" for i in range(n)],
        mods,
        time=time,
        event=event,
        meta={"source": "synthetic (mmlego simulate)"},
    )


def cohort_seed(spec: ScenarioFile) -> int:
    """What decides who holds which patient and the test folds: seeds of one block of
    ``test_folds`` share it (their test sets are the folds of the same hospitals)."""
    return spec.seed // spec.test_folds


def test_rows(data: MultimodalDataset, spec: ScenarioFile, who: str) -> np.ndarray:
    """(n,) bool: the patients of ``data`` (one hospital's) that this seed holds out for testing:
    fold ``seed % test_folds`` of a stratified split seeded by :func:`cohort_seed`."""
    try:
        folds = site_folds(data, spec.test_folds, 1000 + cohort_seed(spec), setting="test_folds")
    except FoldError as exc:
        raise ConfigError(f"scenario {spec.name}: {who}: {exc}") from None
    return folds == spec.seed % spec.test_folds


def partition(scn: Scenario, pool: MultimodalDataset | None = None) -> Partition:
    """Deal the scenario's patients to the sites (by group, then by share; ``overlap`` of them to
    every site), then hold out each site's test fold of this seed (stratified). Sites keep their
    own modalities; test parts keep the dataset's."""
    spec = scn.spec
    if spec.export is not None:
        return _exported(scn)
    if spec.sites[0].data is not None:
        return _own_folders(scn)
    scratch = None
    if pool is None:
        if spec.synthetic is not None:
            pool = synthetic_data(
                spec.synthetic, cohort_seed(spec)
            )  # the same cohort for the seeds that share hospitals
        elif spec.slides is not None:
            pool, scratch = slide_cohort(spec.slides)
        else:
            from common.data import load_builtin

            pool = load_builtin(str(spec.dataset))
    wanted = {m for s in spec.sites for m in s.modalities}
    missing = sorted(wanted - set(pool.modalities))
    if missing:
        raise ConfigError(
            f"scenario {spec.name}: dataset {pool.name} has no modality {missing[0]} "
            f"(it has {sorted(pool.modalities)})"
        )
    task_mods = sorted(wanted)
    rng = np.random.default_rng(cohort_seed(spec) + 1)
    shared = rng.permutation(len(pool))[
        : round(spec.overlap * len(pool))
    ]  # held by every site, tested by none
    rows = _assign(scn, pool, rng, np.setdiff1d(np.arange(len(pool)), shared))
    sites: dict[str, MultimodalDataset] = {}
    test: list[MultimodalDataset] = []
    test_of: dict[str, int] = {}
    for s in spec.sites:
        own = pool.subset(rows[s.name])
        held = test_rows(own, spec, f"site {s.name}")
        dev = np.concatenate([rows[s.name][~held], shared])
        if dev.size < 10:
            raise ConfigError(
                f"scenario {spec.name}: site {s.name} gets {dev.size} patients besides its test "
                "ones; it needs at least 10"
            )
        sites[s.name] = pool.subset(np.sort(dev)).select_modalities(s.modalities)
        # every site trains on the shared patients: its validation patients come from its own only
        if shared.size:
            sites[s.name].holdout = _validation(
                sites[s.name], np.isin(sites[s.name].ids, pool.subset(shared).ids), spec
            )
        test_of[s.name] = len(test)
        test.append(own.subset(np.flatnonzero(held)).select_modalities(task_mods))
    return Partition(
        sites,
        test,
        test_of,
        synthetic=spec.synthetic is not None or scratch is not None,
        scratch=scratch,
    )


def _validation(data: MultimodalDataset, shared: np.ndarray, spec: ScenarioFile) -> np.ndarray:
    """(n,) the site's validation patients (its ``split`` column) when some of its patients are
    every site's: a seeded, stratified ``val_fraction`` of its own patients, never a shared one."""
    own = np.flatnonzero(~shared)
    strata = strata_of(data)[own]
    rng = np.random.default_rng(spec.seed + 7)
    out = np.zeros(len(data), dtype=bool)
    for value in np.unique(strata):
        rows = rng.permutation(own[strata == value])
        out[rows[: max(1, round(spec.val_fraction * rows.size))]] = True
    return out


def slide_cohort(cfg: SlidesSection) -> tuple[MultimodalDataset, Path]:
    """The synthetic slide cohort, written to a scratch folder (the caller removes it) and loaded
    as a site data folder is. The cohort is the same for every seed of a scenario (a dataset);
    the seed splits it and deals it to the sites."""
    import tempfile

    from common.data.sitefolder import load_site_folder
    from common.data.slidecohort import SlideCohort, write_slide_cohort

    scratch = Path(tempfile.mkdtemp(prefix="mmlego-slides-"))
    cohort = SlideCohort(
        slides=cfg.slides,
        features=cfg.features,
        median_instances=cfg.median_instances,
        max_instances=max(cfg.max_instances, cfg.median_instances),
        min_instances=min(100, cfg.median_instances),
        genes=cfg.genes,
    )
    try:
        return load_site_folder(
            write_slide_cohort(scratch / "cohort", cohort, cfg.train_instances)
        ), scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _assign(
    scn: Scenario, part: MultimodalDataset, rng: np.random.Generator, among: np.ndarray
) -> dict[str, np.ndarray]:
    """Rows of ``part`` (only those in ``among``) for every site: its group's patients, then
    shares of the rest in proportion, stratum by stratum."""
    spec = scn.spec
    rows: dict[str, np.ndarray] = {}
    taken = np.ones(len(part), dtype=bool)
    taken[among] = False
    for s in spec.sites:
        if s.group is not None:
            if part.groups is None or s.group not in set(part.groups):
                have = sorted(set(part.groups)) if part.groups is not None else []
                raise ConfigError(
                    f"scenario {spec.name}: site {s.name}: no group {s.group!r} in {part.name} "
                    f"(groups: {have})"
                )
            rows[s.name] = np.intersect1d(np.flatnonzero(part.groups == s.group), among)
            taken[rows[s.name]] = True
    free = np.flatnonzero(~taken)
    sharers = [s for s in spec.sites if s.share is not None]
    if sharers:
        cuts = np.cumsum([s.share for s in sharers]) / sum(s.share for s in sharers)  # type: ignore[misc]
        strata = strata_of(part)[free]
        dealt: dict[str, list[np.ndarray]] = {s.name: [] for s in sharers}
        for value in np.unique(
            strata
        ):  # stratum by stratum, so that every site gets its share of events / classes
            rows_v = rng.permutation(free[strata == value])
            bounds = [0, *np.round(cuts * len(rows_v)).astype(int)]
            for s, a, b in zip(sharers, bounds[:-1], bounds[1:], strict=True):
                dealt[s.name].append(rows_v[a:b])
        for name, parts in dealt.items():
            rows[name] = np.concatenate(parts)
    return {name: np.unique(np.asarray(r, dtype=int)) for name, r in rows.items()}


def _exported(scn: Scenario) -> Partition:
    """Write every site's data folder from the built-in dataset (its group's patients, or its
    share of the rest, with its modalities only) into a scratch folder, then read them back as a
    scenario of site data folders does."""
    import tempfile

    from common.data import load_builtin
    from common.data.export import export_site_folder

    pool = load_builtin(str(scn.spec.export))
    missing = sorted({m for s in scn.spec.sites for m in s.modalities} - set(pool.modalities))
    if missing:
        raise ConfigError(
            f"scenario {scn.name}: dataset {pool.name} has no modality {missing[0]} "
            f"(it has {sorted(pool.modalities)})"
        )
    rows = _assign(
        scn, pool, np.random.default_rng(cohort_seed(scn.spec) + 3), np.arange(len(pool))
    )
    with tempfile.TemporaryDirectory(prefix="mmlego-scenario-") as tmp:
        for s in scn.spec.sites:
            export_site_folder(
                pool.subset(rows[s.name]).select_modalities(s.modalities), Path(tmp) / str(s.data)
            )
        return _own_folders(scn, Path(tmp))


def _own_folders(scn: Scenario, base: Path | None = None) -> Partition:
    """Every site's own data folder, its test fold of this seed held out (it keeps the rest)."""
    from common.data.sitefolder import load_site_folder

    base = base or (scn.source.parent if scn.source is not None else Path.cwd())
    sites: dict[str, MultimodalDataset] = {}
    test: list[MultimodalDataset] = []
    test_of: dict[str, int] = {}
    for s in scn.spec.sites:
        data = load_site_folder(base / str(s.data))
        missing = [m for m in s.modalities if m not in data.modalities]
        if missing:
            raise ConfigError(
                f"scenario {scn.name}: site {s.name}'s data folder has no modality {missing[0]}"
            )
        data = data.select_modalities(s.modalities)
        # the site validates by cross-fitting (or its own split), not on the folder's split column
        data.holdout = None
        held = test_rows(data, scn.spec, f"site {s.name}")
        sites[s.name] = data.subset(np.flatnonzero(~held))
        test_of[s.name] = len(test)
        test.append(data.subset(np.flatnonzero(held)))
    return Partition(sites, test, test_of, synthetic=False)
