"""The coordinator's side of LegoFuse rounds: find the nodes and which sites they are, keep the
sites that take part (``FuseConfig.sites``: those with paired data, or every site holding one of
the model's modalities), and run R rounds of FedAvg (FedProx optional) with a deadline on every
step. Messages travel through a :class:`Transport` (Flower's Grid in deployment, see
:class:`GridTransport`), so no step can wait forever."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import DEFAULT_TTL, Message, Metadata, RecordDict
from flwr.app.message import make_message
from flwr.common.constant import ErrorCode
from flwr.serverapp import PrivacyConfig, RdpAccountant
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx
from flwr.supercore.differential_privacy import compute_stdv
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    SamplingMethod,
)

from common.fuse import FuseConfig
from common.fuse.history import RoundRecord, RoundValidation
from common.fuse.messages import (
    DescribeQuery,
    MessageError,
    SiteDescription,
    TrainInstruction,
    TrainReply,
)
from common.fuse.wire import float32_runs, layout, pack_runs, trainable_names, unpack_runs

log = logging.getLogger("mmlego.coordinator")


class FuseError(RuntimeError):
    """A fuse run that cannot go on (too few sites, none taking part, a deadline passed)."""


class NotStored(FuseError):
    """A fuse run that completed but kept no round: none beat the parent on consortium
    validation."""


class Transport(Protocol):
    def node_ids(self) -> list[int]: ...

    def ask(
        self,
        node_ids: Iterable[int],
        message_type: str,
        content: Callable[[int], RecordDict],
        group: str,
        timeout_s: float,
    ) -> dict[int, RecordDict | str]:
        """Send one message per node and collect the replies that arrive within ``timeout_s``:
        node -> reply content, or an error text; nodes that did not answer are absent."""
        ...


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    site: str
    modalities: tuple[str, ...]
    paired: bool


def takes_part(sites: str, modalities: Sequence[str]) -> Callable[[NodeInfo], bool]:
    """Whether a node's site trains in a run whose ``FuseConfig.sites`` is ``sites``, for a model
    of ``modalities``: "paired", a site enrolled with paired data (its patients having every
    modality it holds train); "all", a site enrolled with at least one of the model's modalities
    (each of its patients having one of them trains)."""
    if sites == "paired":
        return lambda n: n.paired
    if sites == "all":
        return lambda n: bool(set(n.modalities) & set(modalities))
    raise ValueError(f"unknown fuse sites {sites!r}")


def discover(
    transport: Transport,
    deadline_s: float,
    want_sites: int,
    poll_s: float = 1.0,
    vet: Callable[[list[NodeInfo]], list[NodeInfo]] | None = None,
    counts: Callable[[NodeInfo], bool] = lambda n: n.paired,
) -> list[NodeInfo]:
    """Ask every connected node who it is, until ``want_sites`` sites that ``counts`` (by default
    the paired ones; :func:`takes_part` for a run's rule) answered or the deadline. ``vet``
    replaces what nodes say by what is known of them (and drops impostors) before they are
    counted."""
    end = time.monotonic() + deadline_s
    known: dict[int, NodeInfo] = {}
    while True:
        new = [n for n in transport.node_ids() if n not in known]
        if new:
            left = max(0.1, end - time.monotonic())
            for node, reply in transport.ask(
                new,
                DescribeQuery.message_type,
                lambda _: DescribeQuery().to_recorddict(),
                DescribeQuery.group,
                min(left, 30.0),
            ).items():
                if isinstance(reply, str):
                    log.warning("node %s did not describe itself: %s", node, reply)
                    continue
                try:
                    info = SiteDescription.from_recorddict(reply)
                except MessageError as exc:
                    log.warning("node %s sent a malformed description: %s", node, exc)
                    continue
                known[node] = NodeInfo(node, info.site, info.modalities, info.paired)
        nodes = sorted(known.values(), key=lambda n: n.site)
        if vet is not None:
            nodes = vet(nodes)
        if sum(counts(n) for n in nodes) >= want_sites or time.monotonic() >= end:
            return nodes
        time.sleep(poll_s)


@dataclass(frozen=True)
class Privacy:
    """Central differential privacy by server-side fixed clipping, applied by Flower's
    ``DifferentialPrivacyServerSideFixedClipping`` wrapper around ``FedAvg``: every site's update
    of the trainable tensors is clipped to L2 norm ``clipping_norm``, the clipped models are
    averaged uniformly, and Gaussian noise of std ``noise_multiplier * clipping_norm / sites`` is
    added. The privacy spent (site-level, RDP accounting without sampling amplification) is
    tracked with Flower's ``RdpAccountant`` and reported at ``delta``."""

    noise_multiplier: float
    clipping_norm: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0 or self.clipping_norm <= 0:
            raise ValueError(
                "differential privacy needs noise_multiplier >= 0 and clipping_norm > 0"
            )
        if not 0 < self.delta < 1:
            raise ValueError("differential privacy needs 0 < delta < 1")

    def strategy(self, sites: int) -> Any:
        return DifferentialPrivacyServerSideFixedClipping(
            FedAvg(weighted_by_key=UNIT_WEIGHT), self.noise_multiplier, self.clipping_norm, sites
        )

    def accountant(self, population: int) -> Any:
        if self.noise_multiplier <= 0:
            return None  # no noise: no finite guarantee to account
        return RdpAccountant(
            PrivacyConfig(
                target_delta=self.delta,
                population_size=max(1, population),
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )

    def card(self, accountant: Any, noise_std: list[float]) -> dict[str, str]:
        spent = (
            accountant.get_privacy_spent()
            if accountant is not None and accountant.num_releases
            else None
        )
        return {
            "mechanism": "central DP, server-side fixed clipping "
            "(flwr DifferentialPrivacyServerSideFixedClipping + FedAvg)",
            "noise_multiplier": str(self.noise_multiplier),
            "clipping_norm": str(self.clipping_norm),
            "noise_std_per_round": ", ".join(f"{s:.6g}" for s in noise_std),
            "aggregation": "uniform mean of clipped updates of the trainable tensors",
            "epsilon": f"{spent.epsilon:.4f}"
            if spent
            else "inf (no noise)"
            if self.noise_multiplier <= 0
            else "n/a",
            "delta": str(self.delta),
            "accounting": "site-level RDP, no sampling amplification (flwr RdpAccountant)",
        }


UNIT_WEIGHT = "unit-weight"  # DP averages the sites uniformly (the noise is calibrated to that)


def read_reply(
    content: RecordDict, states: list[dict[str, torch.Tensor]], keys: list[str]
) -> TrainReply | str:
    """A site's train reply, decoded, or why it cannot be aggregated (not the packed trainable
    tensors of this model, one array per run, non-finite values, a bad example count)."""
    try:
        reply = TrainReply.from_recorddict(content, runs=len(states))
        unpack_runs(reply.arrays, states[0], keys, len(states))
    except (KeyError, TypeError, ValueError) as exc:  # MessageError is a ValueError
        return f"malformed reply ({exc})"
    count = float(reply.num_examples)
    if not math.isfinite(count) or count < 1:
        return f"reply has num-examples {count}"
    if not all(np.isfinite(reply.flat(i)).all() for i in range(reply.runs)):
        return "the reply's tensors have non-finite values"
    return reply


def aggregate(
    round_: int,
    states: list[dict[str, torch.Tensor]],
    replies: dict[int, TrainReply],
    keys: list[str],
    cfg: FuseConfig,
    privacy: Privacy | None,
) -> list[dict[str, torch.Tensor]]:
    """One round's aggregate by a Flower strategy (``FedAvg``/``FedProx`` weighted by examples,
    or the DP wrapper) of the packed trainable tensors ``keys`` of every run (the full run and
    the fold runs, each averaged with itself; the DP wrapper clips a site's update of all runs
    together); the rest keep their values (sites cannot change frozen parts)."""
    if privacy is not None:
        strategy = privacy.strategy(len(replies))
        strategy.current_arrays = pack_runs(states, keys)
    else:
        strategy = FedProx(proximal_mu=cfg.proximal_mu) if cfg.proximal_mu > 0 else FedAvg()
    msgs = []
    for node, reply in replies.items():
        meta = Metadata(
            run_id=0,
            message_id="",
            src_node_id=node,
            dst_node_id=0,
            reply_to_message_id="",
            group_id=f"round-{round_}",
            created_at=time.time(),
            ttl=DEFAULT_TTL,
            message_type=TrainInstruction.message_type,
        )
        # Flower's strategies aggregate reply Messages; the content may come from a transport
        # other than the Grid (tests, benchmarks), so each is wrapped with metadata of its own.
        msgs.append(make_message(meta, reply.strategy_content({UNIT_WEIGHT: 1.0})))
    try:
        result, _ = strategy.aggregate_train(round_, msgs)
    except (
        Exception
    ) as exc:  # the replies were checked; anything left is named, not a crash of the run
        raise FuseError(f"round {round_}: aggregation failed: {type(exc).__name__}: {exc}") from exc
    if result is None:
        raise FuseError(f"round {round_}: the strategy produced no aggregate")
    return unpack_runs(float32_runs(result, len(states)), states[0], keys, len(states))


class Verdict(Protocol):
    """What a judge finds of a round: how much better than the parent, and its summary."""

    @property
    def diff(self) -> float: ...

    def summary(self) -> RoundValidation: ...


@dataclass
class FuseOutcome:
    # the kept round's global weights of the full run (the last round's without a judge)
    state: dict[str, torch.Tensor]
    history: list[RoundRecord]
    participants: list[str]
    privacy: dict[str, str] | None = None
    best_round: int = 0  # the round kept (0: none was judged)
    verdicts: dict[int, Any] = field(default_factory=dict)  # round -> what the judge found


# (round, every run's global state: the full run first, then the fold runs) -> a verdict, or None
Judge = Callable[[int, list[dict[str, torch.Tensor]]], Verdict | None]


class Rotation:
    """Which of the sites taking part train in each round when at most ``k`` may (``k`` 0: all):
    a permutation of them seeded by ``seed``, walked ``k`` at a time from where the last round
    stopped, skipping sites no longer answering; over rounds every site trains as often as any
    other, give or take one round."""

    def __init__(self, nodes: list[NodeInfo], k: int, seed: int) -> None:
        order = sorted(nodes, key=lambda n: n.site)
        random.Random(seed).shuffle(order)
        self.order, self.k, self.cursor = [n.node_id for n in order], k, 0

    def take(self, active: set[int]) -> list[int]:
        live = [n for n in self.order if n in active]
        if not self.k or self.k >= len(live):
            return live
        out: list[int] = []
        while len(out) < self.k:
            n = self.order[self.cursor % len(self.order)]
            self.cursor += 1
            if n in active:
                out.append(n)
        return out


def run_rounds(
    transport: Transport,
    nodes: list[NodeInfo],
    start: torch.nn.Module,
    cfg: FuseConfig,
    model_id: str,
    round_timeout_s: float,
    min_sites: int,
    privacy: Privacy | None = None,
    judge: Judge | None = None,
    on_round: Callable[[list[RoundRecord]], None] = lambda _: None,
) -> FuseOutcome:
    """Up to R rounds of FedAvg over ``nodes`` from the weights of ``start``; a round goes on with
    the sites that answered by its deadline if at least ``min_sites`` did, else the run fails
    naming who was missing. A reply that cannot be aggregated counts as a failed site; a site that
    did not answer at all is not asked again in this run (a dead node would cost every later round
    its whole deadline). Only the trainable tensors travel and are aggregated. With
    ``cfg.folds`` = F > 0, F fold runs travel beside the full run, each starting from the same
    weights; fold run k is trained by every site without its own fold k, so each site can score
    every round on all its patients out of fold (docs/EVALUATION.md).

    With a ``judge`` (the sites' consortium validation of each round's global model against the
    parent), the run keeps the best round's weights and stops after ``cfg.patience`` rounds
    without a better one; a round the judge cannot measure (None) ends the run with FuseError.
    ``on_round`` gets the history after every round (and its verdict)."""
    kind = "paired " if cfg.sites == "paired" else ""  # how the messages name the sites
    if len(nodes) < min_sites:
        raise FuseError(
            f"{len(nodes)} {kind}site(s) available "
            f"({', '.join(n.site for n in nodes) or 'none'}); min_sites is {min_sites}"
        )
    if 0 < cfg.sites_per_round < min_sites:
        raise FuseError(
            f"sites_per_round {cfg.sites_per_round} is below min_sites {min_sites}: no round "
            "could go on"
        )
    by_id = {n.node_id: n for n in nodes}
    active = dict(by_id)
    rotation = Rotation(nodes, cfg.sites_per_round, cfg.seed)
    counts_seen: dict[int, int] = {}
    state = {k: v.detach().cpu().clone() for k, v in start.state_dict().items()}
    states = [state] * (1 + cfg.fold_runs)  # every run starts from the same weights
    keys = trainable_names(start)
    accountant = privacy.accountant(len(nodes)) if privacy is not None else None
    noise_std: list[float] = []
    history: list[RoundRecord] = []
    participants: set[str] = set()
    verdicts: dict[int, Verdict] = {}
    best_round, best_state, since = 0, state, 0
    for r in range(1, cfg.rounds + 1):
        instruction = TrainInstruction(
            cfg, model_id, r, layout(state, keys), pack_runs(states, keys)
        )

        def content(_: int, m: TrainInstruction = instruction) -> RecordDict:
            return m.to_recorddict()

        t0 = time.monotonic()
        if len(active) < min_sites:
            raise FuseError(
                f"round {r}: {len(active)} {kind}site(s) left "
                f"({', '.join(n.site for n in active.values()) or 'none'}; "
                f"the others stopped answering); min_sites is {min_sites}"
            )
        chosen = rotation.take(set(active))
        replies = transport.ask(
            chosen,
            instruction.message_type,
            content,
            instruction.group,
            round_timeout_s,
        )
        ok: dict[int, TrainReply] = {}
        failed: dict[str, str] = {}
        for n, rep in replies.items():
            read = rep if isinstance(rep, str) else read_reply(rep, states, keys)
            if isinstance(read, TrainReply):
                count = int(float(read.num_examples))
                # FedAvg weights are the sites' own counts: they may not drift
                if counts_seen.setdefault(n, count) != count:
                    read = f"reported {count} patients after {counts_seen[n]} in an earlier round"
            if isinstance(read, TrainReply):
                ok[n] = read
            else:
                failed[by_id[n].site] = read
        silent = [active.pop(n).site for n in chosen if n not in replies]
        for site, err in failed.items():
            log.warning("round %d: site %s failed: %s", r, site, err)
        if silent:
            log.warning(
                "round %d: no answer from %s within %.0f s", r, ", ".join(silent), round_timeout_s
            )
        if len(ok) < min_sites:
            asked = len(ok) + len(failed) + len(silent)
            why = "; ".join(f"{site}: {err}" for site, err in sorted(failed.items())) or "none"
            raise FuseError(
                f"round {r}: {len(ok)} of {asked} {kind}sites answered (failed: {why}; "
                f"no answer within {round_timeout_s:.0f} s: {silent or 'none'}); "
                f"min_sites is {min_sites}"
            )
        counts = [float(rep.num_examples) for rep in ok.values()]
        losses = [rep.train_loss for rep in ok.values()]
        states = aggregate(r, states, ok, keys, cfg, privacy)
        state = states[0]
        if privacy is not None:
            noise_std.append(compute_stdv(privacy.noise_multiplier, privacy.clipping_norm, len(ok)))
            if accountant is not None:
                accountant.compose(
                    GaussianPrivacyEvent(privacy.noise_multiplier, len(ok), len(nodes))
                )
        sites = sorted(by_id[n].site for n in ok)
        participants.update(sites)
        history.append(
            RoundRecord(
                round=r,
                sites=tuple(sites),
                num_examples=int(sum(counts)),
                site_examples={by_id[n].site: counts_seen[n] for n in ok},
                train_loss=sum(c * x for c, x in zip(counts, losses, strict=True)) / sum(counts),
                failed=tuple(sorted(failed)),
                errors=failed,
                no_answer=tuple(silent),
                seconds=round(time.monotonic() - t0, 2),
            )
        )
        log.info(
            "round %d of %d: %d sites, %d patients, loss %.4f",
            r,
            cfg.rounds,
            len(ok),
            int(sum(counts)),
            history[-1].train_loss,
        )
        if judge is None:
            on_round(history)
            continue
        verdict = judge(r, states)
        if verdict is None:
            raise FuseError(
                f"round {r}: no site reported validation scores of the round's model (each "
                "declined or was silent: too few validation patients or events, evaluation "
                "switched off, or not running); a LegoFuse round can only be kept on consortium "
                "validation, so nothing is stored. Run it with --unvalidated to store the last "
                "of a fixed number of rounds unmeasured"
            )
        verdicts[r] = verdict
        history[-1] = replace(history[-1], validation=verdict.summary())
        on_round(history)
        if best_round == 0 or verdict.diff > verdicts[best_round].diff:
            best_round, best_state, since = r, {k: v.clone() for k, v in state.items()}, 0
        else:
            since += 1
            if since >= cfg.patience:
                log.info(
                    "round %d: %d rounds without a better validation metric than round %d; "
                    "stopping",
                    r,
                    since,
                    best_round,
                )
                break
    card = privacy.card(accountant, noise_std) if privacy is not None else None
    if judge is not None:
        return FuseOutcome(best_state, history, sorted(participants), card, best_round, verdicts)
    return FuseOutcome(state, history, sorted(participants), card)


# The SuperLink's own error replies for a node that disconnected or lost the message.
NODE_GONE = {
    ErrorCode.NODE_UNAVAILABLE,
    ErrorCode.MESSAGE_UNAVAILABLE,
    ErrorCode.REPLY_MESSAGE_UNAVAILABLE,
}


class GridTransport:
    """:class:`Transport` over a Flower ``Grid`` (inside the ServerApp)."""

    def __init__(self, grid: Any) -> None:
        self.grid = grid

    def node_ids(self) -> list[int]:
        return list(self.grid.get_node_ids())

    def ask(
        self,
        node_ids: Iterable[int],
        message_type: str,
        content: Callable[[int], RecordDict],
        group: str,
        timeout_s: float,
    ) -> dict[int, RecordDict | str]:
        msgs = [
            Message(content(n), dst_node_id=n, message_type=message_type, group_id=group)
            for n in node_ids
        ]
        replies = list(self.grid.send_and_receive(msgs, timeout=timeout_s))
        # Replies are matched to what was sent, not to their source: the SuperLink answers for a
        # node it lost (an error reply from itself).
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in msgs}
        out: dict[int, RecordDict | str] = {}
        for reply in replies:
            node = sent.get(reply.metadata.reply_to_message_id)
            if node is None:
                log.warning(
                    "a reply to no message of this round (from node %s) is ignored",
                    reply.metadata.src_node_id,
                )
                continue
            if reply.has_error() and reply.error.code in NODE_GONE:
                log.warning(
                    "node %s is gone (%s): counted as not answering", node, reply.error.reason
                )
                continue
            out[int(node)] = (
                f"error {reply.error.code}: {reply.error.reason}"
                if reply.has_error()
                else reply.content
            )
        return out
