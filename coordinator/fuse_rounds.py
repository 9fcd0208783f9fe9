"""The coordinator's side of LegoFuse rounds: find the nodes and which sites they are, keep the
sites with paired data, and run R rounds of FedAvg (FedProx optional) with a deadline on every
step. Messages travel through a :class:`Transport` (Flower's Grid in deployment, see
:class:`GridTransport`), so no step can wait forever."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.supercore.differential_privacy import add_gaussian_noise_inplace, compute_clip_model_update, compute_stdv

from common.fuse import FuseConfig, fedavg

log = logging.getLogger("mmlego.coordinator")


class FuseError(RuntimeError):
    """A fuse run that cannot go on (too few sites, no paired site, a deadline passed)."""


class Transport(Protocol):
    def node_ids(self) -> list[int]: ...

    def ask(self, node_ids: Iterable[int], message_type: str, content: Callable[[int], RecordDict], group: str,
            timeout_s: float) -> dict[int, RecordDict | str]:
        """Send one message per node and collect the replies that arrive within ``timeout_s``:
        node -> reply content, or an error text; nodes that did not answer are absent."""
        ...


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    site: str
    modalities: tuple[str, ...]
    paired: bool


def discover(transport: Transport, deadline_s: float, want_paired: int, poll_s: float = 1.0,
             vet: Callable[[list[NodeInfo]], list[NodeInfo]] | None = None) -> list[NodeInfo]:
    """Ask every connected node who it is, until ``want_paired`` paired sites answered or the
    deadline. ``vet`` replaces what nodes say by what is known of them (and drops impostors)
    before they are counted."""
    end = time.monotonic() + deadline_s
    known: dict[int, NodeInfo] = {}
    while True:
        new = [n for n in transport.node_ids() if n not in known]
        if new:
            left = max(0.1, end - time.monotonic())
            for node, reply in transport.ask(new, "query.describe", lambda _: RecordDict(), "describe", min(left, 30.0)).items():
                if isinstance(reply, str):
                    log.warning("node %s did not describe itself: %s", node, reply)
                    continue
                info = reply["site"]
                known[node] = NodeInfo(node, str(info["site"]), tuple(info["modalities"]), bool(info["paired"]))  # type: ignore[index, arg-type]
        nodes = sorted(known.values(), key=lambda n: n.site)
        if vet is not None:
            nodes = vet(nodes)
        if sum(n.paired for n in nodes) >= want_paired or time.monotonic() >= end:
            return nodes
        time.sleep(poll_s)


@dataclass(frozen=True)
class Privacy:
    """Central differential privacy by server-side fixed clipping (Flower's mechanism, with its
    functions): every site's update is clipped to L2 norm ``clipping_norm``, the updates are
    averaged uniformly, and Gaussian noise of std ``noise_multiplier * clipping_norm / sites`` is
    added to the average. Only trainable tensors are clipped and noised."""

    noise_multiplier: float
    clipping_norm: float

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0 or self.clipping_norm <= 0:
            raise ValueError("differential privacy needs noise_multiplier >= 0 and clipping_norm > 0")

    def card(self, sites: int) -> dict[str, str]:
        return {"mechanism": "central DP, server-side fixed clipping (flwr.supercore.differential_privacy)",
                "noise_multiplier": str(self.noise_multiplier), "clipping_norm": str(self.clipping_norm),
                "noise_std": str(compute_stdv(self.noise_multiplier, self.clipping_norm, max(1, sites))),
                "aggregation": "uniform mean of clipped updates"}


def private_mean(states: list[dict[str, torch.Tensor]], start: dict[str, torch.Tensor], privacy: Privacy,
                 trainable: set[str]) -> dict[str, torch.Tensor]:
    """The DP aggregate: clipped updates, uniform mean, Gaussian noise; other tensors as FedAvg of the copies."""
    keys = [k for k in start if k in trainable]
    base = [start[k].detach().double().numpy() for k in keys]
    clipped = []
    for s in states:
        arrays = [s[k].detach().double().numpy().copy() for k in keys]
        compute_clip_model_update(arrays, base, privacy.clipping_norm)  # arrays := base + clip(arrays - base)
        clipped.append(arrays)
    mean = [np.mean([c[i] for c in clipped], axis=0) for i in range(len(keys))]
    update = [m - b for m, b in zip(mean, base, strict=True)]
    add_gaussian_noise_inplace(update, compute_stdv(privacy.noise_multiplier, privacy.clipping_norm, len(states)))
    out = fedavg(states, [1.0] * len(states))
    for k, b, u in zip(keys, base, update, strict=True):
        out[k] = torch.from_numpy(b + u).to(start[k].dtype)
    return out


@dataclass
class FuseOutcome:
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    participants: list[str]


def run_rounds(transport: Transport, nodes: list[NodeInfo], state: dict[str, torch.Tensor], cfg: FuseConfig, model_id: str,
               round_timeout_s: float, min_sites: int, privacy: Privacy | None = None,
               trainable: set[str] | None = None) -> FuseOutcome:
    """R rounds of FedAvg over ``nodes``; a round goes on with the sites that answered by its
    deadline if at least ``min_sites`` did, else the run fails naming who was missing."""
    if len(nodes) < min_sites:
        raise FuseError(f"{len(nodes)} paired site(s) available ({', '.join(n.site for n in nodes) or 'none'}); "
                        f"min_sites is {min_sites}")
    by_id = {n.node_id: n for n in nodes}
    history: list[dict[str, Any]] = []
    participants: set[str] = set()
    for r in range(1, cfg.rounds + 1):
        arrays = ArrayRecord.from_torch_state_dict(state)
        settings = ConfigRecord({**cfg.to_dict(), "model-id": model_id, "round": r})

        def content(_: int, arrays: ArrayRecord = arrays, settings: ConfigRecord = settings) -> RecordDict:
            return RecordDict({"arrays": arrays, "config": settings})

        t0 = time.monotonic()
        replies = transport.ask(list(by_id), "train", content, f"round-{r}", round_timeout_s)
        ok = {n: rep for n, rep in replies.items() if not isinstance(rep, str)}
        failed = {by_id[n].site: rep for n, rep in replies.items() if isinstance(rep, str)}
        silent = [by_id[n].site for n in by_id if n not in replies]
        for site, err in failed.items():
            log.warning("round %d: site %s failed: %s", r, site, err)
        if silent:
            log.warning("round %d: no answer from %s within %.0f s", r, ", ".join(silent), round_timeout_s)
        if len(ok) < min_sites:
            raise FuseError(f"round {r}: {len(ok)} of {len(by_id)} paired sites answered (failed: {sorted(failed) or 'none'}, "
                            f"no answer within {round_timeout_s:.0f} s: {silent or 'none'}); min_sites is {min_sites}")
        states = [rep["arrays"].to_torch_state_dict() for rep in ok.values()]  # type: ignore[union-attr]
        counts = [float(rep["metrics"]["num-examples"]) for rep in ok.values()]  # type: ignore[index, arg-type]
        losses = [float(rep["metrics"]["train_loss"]) for rep in ok.values()]  # type: ignore[index, arg-type]
        if privacy is None:
            state = fedavg([dict(s) for s in states], counts)
        else:
            keys = trainable if trainable is not None else {k for k, v in state.items() if v.is_floating_point()}
            state = private_mean([dict(s) for s in states], state, privacy, keys)
        sites = sorted(by_id[n].site for n in ok)
        participants.update(sites)
        history.append({"round": r, "sites": sites, "num-examples": int(sum(counts)),
                        "train_loss": sum(c * x for c, x in zip(counts, losses, strict=True)) / sum(counts),
                        "failed": sorted(failed), "no_answer": silent, "seconds": round(time.monotonic() - t0, 2)})
        log.info("round %d of %d: %d sites, %d patients, loss %.4f", r, cfg.rounds, len(ok), int(sum(counts)),
                 history[-1]["train_loss"])
    return FuseOutcome(state, history, sorted(participants))


class GridTransport:
    """:class:`Transport` over a Flower ``Grid`` (inside the ServerApp)."""

    def __init__(self, grid: Any) -> None:
        self.grid = grid

    def node_ids(self) -> list[int]:
        return list(self.grid.get_node_ids())

    def ask(self, node_ids: Iterable[int], message_type: str, content: Callable[[int], RecordDict], group: str,
            timeout_s: float) -> dict[int, RecordDict | str]:
        msgs = [Message(content(n), dst_node_id=n, message_type=message_type, group_id=group) for n in node_ids]
        out: dict[int, RecordDict | str] = {}
        for reply in self.grid.send_and_receive(msgs, timeout=timeout_s):
            node = int(reply.metadata.src_node_id)
            out[node] = str(reply.error.reason) if reply.has_error() else reply.content
        return out
