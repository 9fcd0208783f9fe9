"""A site's part in LegoFuse rounds, as plain handlers (the Flower ClientApp in
:mod:`site_client.flower_app` only wraps them): say who the site is, and run one round of local
fine-tuning on the site's round patients (the run's ``sites`` rule: with "paired" those having
every model modality the site holds, with "all" those having one of them): with cross-fitting,
the full run on all of them and each fold run without one fold (the site scores rounds out of
fold); otherwise on its training patients (never the validation patients it scores on). Only
weights, the patient count and the mean loss leave the site; a failure is reported by its kind
only (:class:`SiteFailure`)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
from flwr.app import RecordDict

from common.artifacts.modelfile import load_model_folder
from common.data.dataset import MultimodalDataset
from common.data.sitefolder import load_site_folder
from common.data.splits import site_folds, site_split
from common.fuse import fused_of, round_patients
from common.fuse.messages import SiteDescription, TrainInstruction
from common.fuse.siteround import site_round
from common.lego import LegoEnsemble, LegoMerge
from common.lego.recipe import RecipeModel
from common.records import ModelRecord

from .config import SiteConfig, load_site_config

log = logging.getLogger("mmlego.site")


class SiteFailure(Exception):
    """What the coordinator is told when a site's part fails: the kind of problem, never the
    error's text, which could quote the site's data (a count, a value, a file or column name);
    Flower sends an exception's text to the SuperLink. The whole error is in the site's log."""


F = TypeVar("F", bound=Callable[..., Any])
# the patients a round trains on, as the site's log and refusals name them, by the run's rule
PATIENTS = {"paired": "paired patients", "all": "patients with a modality of the model"}


def guarded(handler: F) -> F:
    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except SiteFailure:
            raise
        except Exception as exc:
            log.exception("%s failed at this site", handler.__name__)
            raise SiteFailure(
                f"{type(exc).__name__} at the site (the details stay in the site's log)"
            ) from None

    return cast(F, run)


def node_settings(node_config: Mapping[str, Any], run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The node config a handler reads: a SuperNode's own (``--node-config site-config=...``), or
    on Flower's simulation engine, whose nodes carry only ``partition-id``, the site.toml that the
    run's partition file (run config ``partitions``) names for that partition."""
    out = dict(node_config)
    if "site-config" not in out and "partition-id" in out and run_config.get("partitions"):
        entries = json.loads(Path(str(run_config["partitions"])).read_text())
        out["site-config"] = entries[int(out["partition-id"])]["config"]
    return out


def site_config(node_config: dict[str, Any]) -> SiteConfig:
    path = node_config.get("site-config")
    if not isinstance(path, str) or not path:
        raise ValueError("the node config has no site-config (path of the site's site.toml)")
    return load_site_config(Path(path))


@guarded
def describe(node_config: dict[str, Any]) -> RecordDict:
    """Who this node is: site name, enrolled modalities, paired flag (from the site's kit)."""
    cfg = site_config(node_config)
    return SiteDescription(cfg.site, tuple(cfg.modalities), cfg.paired).to_recorddict()


def model_folder(cfg: SiteConfig, model_id: str) -> Path:
    """The model version's folder at this site, pulled from the registry once (hashes and
    signatures checked)."""
    folder = cfg.state / "models" / model_id
    if not (folder / "model.pb").is_file():
        from common.client import RegistryClient

        with RegistryClient(cfg.coordinator, cfg.tls, insecure=cfg.insecure) as client:
            client.pull_model(
                model_id, folder, verified=cfg.state / "verified-blocks"
            )  # blocks it checked before: linked
    return folder


# the versions this process loaded last (folder -> (model.pb's mtime and size, the loaded model and
# record)): an actor of Flower's simulation engine serves every round of a run, and a round starts
# from a version it loaded for the round before (a LegoFuse copies its blocks: the loaded version
# is never trained in place). A deployed ClientApp is a fresh process per message: it loads again.
_LOADED: dict[Path, tuple[tuple[int, int], tuple[RecipeModel, ModelRecord]]] = {}
_KEEP = 2


def loaded_version(folder: Path) -> tuple[RecipeModel, ModelRecord]:
    """``load_model_folder(folder)``, once per version in this process (checked again if its
    model.pb changed)."""
    stat = (folder / "model.pb").stat()
    key = (stat.st_mtime_ns, stat.st_size)
    hit = _LOADED.pop(folder, None)
    if hit is None or hit[0] != key:
        hit = (key, load_model_folder(folder))
    _LOADED[folder] = hit  # the newest last
    while len(_LOADED) > _KEEP:
        del _LOADED[next(iter(_LOADED))]
    return hit[1]


def round_data(
    cfg: SiteConfig,
    everyone: MultimodalDataset,
    modalities: list[str],
    fold_runs: int,
    sites: str = "paired",
) -> tuple[MultimodalDataset, list[MultimodalDataset]]:
    """The patients a round trains on (``sites`` "paired": those with every model modality the
    site holds; "all": those with one of them): the full run's, and fold run k's (those outside
    the site's fold k). Cross-fitting sites (``[evaluation] folds`` = K) train the full run on
    every such patient and fold run k without fold k, so that they score every round out of fold;
    a run with another number of fold runs they do not take part in. Sites with a validation
    split (K = 0) train every run on their training patients, never on those they score on. The
    folds and the split are those of all the site's patients, as its evaluation draws them."""
    folds = cfg.evaluation.folds
    if folds == 0:
        rows, _ = site_split(everyone, cfg.train.val_fraction, cfg.train.seed)
        data = round_patients(everyone.subset(rows), modalities, sites)
        return data, [data] * fold_runs
    if fold_runs != folds:
        raise SiteFailure(
            f"the run has {fold_runs} fold runs; site {cfg.site!r} cross-fits with "
            f"[evaluation] folds = {folds} and cannot score it out of fold: it does not take part"
        )
    fold_of = site_folds(everyone, folds, cfg.train.seed)
    return (
        round_patients(everyone, modalities, sites),
        [
            round_patients(everyone.subset(np.flatnonzero(fold_of != k)), modalities, sites)
            for k in range(folds)
        ],
    )


@guarded
def train(content: RecordDict, node_config: dict[str, Any]) -> RecordDict:
    """One round: the global trainable weights into the LegoFuse of the model's blocks, ``epochs``
    epochs on the round's patients (:func:`round_data`), the new trainable weights and aggregate
    metrics back."""
    cfg = site_config(node_config)
    instruction = TrainInstruction.from_recorddict(content)
    model_id, round_, fuse = instruction.model_id, instruction.round, instruction.config
    merged, record = loaded_version(model_folder(cfg, model_id))
    if not isinstance(merged, (LegoMerge, LegoEnsemble)):
        raise ValueError(
            f"fuse rounds start from a merge or ensemble version; {model_id} is a "
            f"{record.recipe.kind}"
        )
    model = fused_of(merged, fuse.mode, record.recipe)
    data, fold_data = round_data(
        cfg, load_site_folder(cfg.data), model.modalities, fuse.fold_runs, fuse.sites
    )
    which = PATIENTS[fuse.sites]
    if len(data) < cfg.min_cell_size:  # the patient count goes back with the weights
        log.warning(
            "%d %s, fewer than the minimum cell size %d ([privacy] min_cell_size): not taking part",
            len(data),
            which,
            cfg.min_cell_size,
        )
        raise SiteFailure(
            f"site {cfg.site!r} has fewer {which} than its minimum cell size "
            f"({cfg.min_cell_size}); it does not take part"
        )
    reply = site_round(model, instruction, data, fuse, device=cfg.train.device, fold_data=fold_data)
    log.info(
        "fuse round %d of %s at %s: %d %s, loss %.4f",
        round_,
        model_id,
        cfg.site,
        len(data),
        which,
        reply.train_loss,
    )
    return reply.to_recorddict()
