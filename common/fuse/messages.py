"""The messages of LegoFuse rounds across Flower, typed: a node describing itself, a round's train
instruction and a site's train reply, each a dataclass with ``to_recorddict``/``from_recorddict``.
This module is the only place that knows their record names and keys; a message that does not
decode raises :class:`MessageError` naming what is wrong. The tensors travel packed as
:mod:`.wire` lays them out (one flat float32 array per run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MessageType, MetricRecord, RecordDict
from flwr.app.typing import ConfigRecordValues

from .federated import FuseConfig
from .wire import run_key

# Records of a message's content, and the keys of their values (what goes on the wire).
SITE = "site"  # describe reply: ConfigRecord {site, modalities, paired}
ARRAYS = "arrays"  # train instruction and reply: ArrayRecord, one packed array per run
CONFIG = "config"  # train instruction: ConfigRecord {FuseConfig's fields, model-id, round, layout}
METRICS = "metrics"  # train reply: MetricRecord {num-examples, train_loss}
MODEL_ID, ROUND, LAYOUT = "model-id", "round", "layout"
NUM_EXAMPLES, TRAIN_LOSS = "num-examples", "train_loss"


class MessageError(ValueError):
    """A round message that does not decode; the text names the record or key and what it held."""


@dataclass(frozen=True)
class DescribeQuery:
    """The coordinator asks a node who it is (the query carries nothing)."""

    action: ClassVar[str] = "describe"
    message_type: ClassVar[str] = f"{MessageType.QUERY}.{action}"
    group: ClassVar[str] = "describe"

    def to_recorddict(self) -> RecordDict:
        return RecordDict()

    @classmethod
    def from_recorddict(cls, content: RecordDict) -> DescribeQuery:
        return cls()


@dataclass(frozen=True)
class SiteDescription:
    """A node's answer to :class:`DescribeQuery`: its site, enrolled modalities and paired flag
    (the coordinator replaces them by what the site's certificate says)."""

    site: str
    modalities: tuple[str, ...]
    paired: bool

    def to_recorddict(self) -> RecordDict:
        return RecordDict(
            {
                SITE: ConfigRecord(
                    {"site": self.site, "modalities": list(self.modalities), "paired": self.paired}
                )
            }
        )

    @classmethod
    def from_recorddict(cls, content: RecordDict) -> SiteDescription:
        info = _record(content, SITE, ConfigRecord)
        modalities = _value(info, SITE, "modalities", list)
        if not all(isinstance(m, str) for m in modalities):
            raise MessageError(f"{SITE}.modalities is {modalities!r}; expected a list of names")
        return cls(
            _value(info, SITE, "site", str), tuple(modalities), _value(info, SITE, "paired", bool)
        )


@dataclass(frozen=True, eq=False)
class TrainInstruction:
    """Round ``round`` of a fuse run from version ``model_id``: every run's global trainable
    tensors (``arrays``, packed by :func:`.wire.pack_runs`: the full run, then the fold runs),
    their ``layout`` digest, and the settings every site trains with."""

    message_type: ClassVar[str] = MessageType.TRAIN

    config: FuseConfig
    model_id: str
    round: int
    layout: str
    arrays: ArrayRecord

    @property
    def group(self) -> str:
        return f"round-{self.round}"

    def to_recorddict(self) -> RecordDict:
        settings: dict[str, ConfigRecordValues] = {
            **self.config.to_dict(),
            MODEL_ID: self.model_id,
            ROUND: self.round,
            LAYOUT: self.layout,
        }
        return RecordDict({ARRAYS: self.arrays, CONFIG: ConfigRecord(settings)})

    @classmethod
    def from_recorddict(cls, content: RecordDict) -> TrainInstruction:
        config = _record(content, CONFIG, ConfigRecord)
        model_id = _value(config, CONFIG, MODEL_ID, str)
        round_ = _value(config, CONFIG, ROUND, int)
        layout = _value(config, CONFIG, LAYOUT, str)
        settings = {k: v for k, v in config.items() if k not in (MODEL_ID, ROUND, LAYOUT)}
        try:
            fuse = FuseConfig.from_dict(settings)
        except (TypeError, ValueError) as exc:
            raise MessageError(f"{CONFIG}: {exc}") from None
        arrays = _record(content, ARRAYS, ArrayRecord)
        _check_runs(arrays, 1 + fuse.fold_runs)
        return cls(fuse, model_id, round_, layout, arrays)


@dataclass(frozen=True, eq=False)
class TrainReply:
    """A site's part of a round: every run's new trainable tensors (packed as in the instruction),
    its paired patient count (the FedAvg weight; sites send an int) and its mean training loss."""

    arrays: ArrayRecord
    num_examples: float
    train_loss: float

    @property
    def runs(self) -> int:
        return len(self.arrays)

    def flat(self, run: int) -> np.ndarray:
        """Run ``run``'s packed tensors (0: the full run, k: fold run k - 1)."""
        return self.arrays[run_key(run)].numpy()

    def to_recorddict(self) -> RecordDict:
        metrics = MetricRecord({NUM_EXAMPLES: self.num_examples, TRAIN_LOSS: self.train_loss})
        return RecordDict({ARRAYS: self.arrays, METRICS: metrics})

    def strategy_content(self, weights: Mapping[str, float]) -> RecordDict:
        """The reply as Flower's strategies aggregate it: the runs' arrays in run order, the
        patient count as a float beside ``weights`` (other ``weighted_by_key`` values, kept at
        the coordinator; never sent); no training loss."""
        return RecordDict(
            {
                ARRAYS: ArrayRecord(
                    {run_key(i): self.arrays[run_key(i)] for i in range(self.runs)}
                ),
                METRICS: MetricRecord({NUM_EXAMPLES: float(self.num_examples), **weights}),
            }
        )

    @classmethod
    def from_recorddict(cls, content: RecordDict, runs: int) -> TrainReply:
        """The reply of a round that sent ``runs`` runs; :class:`MessageError` if it is not one
        (the sizes and values of its tensors are the receiver's to check)."""
        metrics = _record(content, METRICS, MetricRecord)
        count = _number(metrics, NUM_EXAMPLES)
        loss = _number(metrics, TRAIN_LOSS)
        arrays = _record(content, ARRAYS, ArrayRecord)
        _check_runs(arrays, runs)
        return cls(arrays, count, float(loss))


def _check_runs(arrays: ArrayRecord, runs: int) -> None:
    want = [run_key(i) for i in range(runs)]
    if set(arrays) != set(want):
        raise MessageError(f"{ARRAYS} {sorted(arrays)[:4]}; expected {want[:4]}")


R = TypeVar("R", ArrayRecord, ConfigRecord, MetricRecord)
T = TypeVar("T")


def _record(content: RecordDict, name: str, kind: type[R]) -> R:
    record = content.get(name)
    if record is None:
        raise MessageError(f"the message has no {name!r} record (it has {sorted(content)})")
    if not isinstance(record, kind):
        raise MessageError(
            f"the {name!r} record is a {type(record).__name__}; expected {kind.__name__}"
        )
    return record


def _value(record: ConfigRecord, name: str, key: str, kind: type[T]) -> T:
    if key not in record:
        raise MessageError(f"the {name!r} record has no {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MessageError(f"{name}.{key} is {value!r}; expected {kind.__name__}")
    return value


def _number(record: MetricRecord, key: str) -> float:
    """A metric that must be one number (an int stays an int, as it was sent)."""
    if key not in record:
        raise MessageError(f"the {METRICS!r} record has no {key!r}")
    value = record[key]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MessageError(f"{METRICS}.{key} is {value!r}; expected a number")
    return value
