"""The round messages' codec: what goes on the wire (record names, keys, value types) is pinned,
every message survives Flower's own serialization unchanged, and a malformed message is refused
with a MessageError that names what is wrong (never a KeyError or TypeError from deep inside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from hypothesis import given, settings
from hypothesis import strategies as st

from common.fuse import FuseConfig
from common.fuse.messages import (
    DescribeQuery,
    MessageError,
    SiteDescription,
    TrainInstruction,
    TrainReply,
)
from common.fuse.wire import pack_runs, run_key


def over_the_wire(content: RecordDict) -> RecordDict:
    """``content`` as the other end gets it (Flower's protobuf form and back)."""
    return recorddict_from_proto(recorddict_to_proto(content))


def runs(count: int, size: int = 3) -> ArrayRecord:
    states = [{"w": torch.full((size,), float(i))} for i in range(count)]
    return pack_runs(states, ["w"])


def test_the_message_types_are_flowers_query_and_train() -> None:
    assert DescribeQuery.message_type == "query.describe" and DescribeQuery.action == "describe"
    assert TrainInstruction.message_type == "train"
    assert len(DescribeQuery().to_recorddict()) == 0


def test_a_site_description_keeps_its_keys_and_survives_the_wire() -> None:
    sent = SiteDescription("hosp-a", ("genes", "clinical"), True)
    content = sent.to_recorddict()
    assert list(content) == ["site"] and isinstance(content["site"], ConfigRecord)
    assert dict(content["site"]) == {
        "site": "hosp-a",
        "modalities": ["genes", "clinical"],
        "paired": True,
    }
    assert SiteDescription.from_recorddict(over_the_wire(content)) == sent


def test_a_train_instruction_keeps_its_keys_and_survives_the_wire() -> None:
    cfg = FuseConfig(mode="weave", rounds=3, lr=1e-3, folds=2)
    sent = TrainInstruction(cfg, "t1-v2", 2, "abc123", runs(3))
    content = sent.to_recorddict()
    assert list(content) == ["arrays", "config"]
    assert dict(content["config"]) == {
        **cfg.to_dict(),
        "model-id": "t1-v2",
        "round": 2,
        "layout": "abc123",
    }
    assert content["arrays"] is sent.arrays  # encoded once, shared by every node's message
    got = TrainInstruction.from_recorddict(over_the_wire(content))
    assert (got.config, got.model_id, got.round, got.layout) == (cfg, "t1-v2", 2, "abc123")
    assert got.group == "round-2" and list(got.arrays) == [run_key(i) for i in range(3)]
    for k in got.arrays:
        assert np.array_equal(got.arrays[k].numpy(), sent.arrays[k].numpy())


def test_a_train_reply_keeps_its_keys_and_types_and_survives_the_wire() -> None:
    sent = TrainReply(runs(2), 40, 0.25)
    content = sent.to_recorddict()
    assert list(content) == ["arrays", "metrics"]
    assert dict(content["metrics"]) == {"num-examples": 40, "train_loss": 0.25}
    got = TrainReply.from_recorddict(over_the_wire(content), runs=2)
    assert got.num_examples == 40 and isinstance(got.num_examples, int)  # as the site sent it
    assert got.train_loss == 0.25 and got.runs == 2
    assert np.array_equal(got.flat(1), np.full(3, 1.0, np.float32))
    weighed = got.strategy_content({"unit-weight": 1.0})
    assert dict(weighed["metrics"]) == {"num-examples": 40.0, "unit-weight": 1.0}
    assert list(weighed["arrays"]) == ["trainable", "trainable-fold-0"]


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(["stack", "weave"]),
    rounds=st.integers(1, 50),
    epochs=st.integers(1, 9),
    lr=st.floats(1e-6, 1.0),
    batch_size=st.integers(1, 512),
    mu=st.floats(0.0, 10.0),
    seed=st.integers(0, 2**31),
    folds=st.sampled_from([-1, 0, 2, 3, 5]),
    model_id=st.text(min_size=1, max_size=30),
    round_=st.integers(1, 1000),
    layout=st.text(alphabet="0123456789abcdef", min_size=24, max_size=24),
)
def test_any_train_instruction_comes_back_as_sent(
    mode: str,
    rounds: int,
    epochs: int,
    lr: float,
    batch_size: int,
    mu: float,
    seed: int,
    folds: int,
    model_id: str,
    round_: int,
    layout: str,
) -> None:
    cfg = FuseConfig(mode, rounds, epochs, lr, batch_size, mu, seed, folds=folds)
    sent = TrainInstruction(cfg, model_id, round_, layout, runs(1 + cfg.fold_runs))
    got = TrainInstruction.from_recorddict(over_the_wire(sent.to_recorddict()))
    assert (got.config, got.model_id, got.round, got.layout) == (cfg, model_id, round_, layout)


@settings(max_examples=60, deadline=None)
@given(
    site=st.text(max_size=20),
    modalities=st.lists(st.text(min_size=1, max_size=10), max_size=4),
    paired=st.booleans(),
    count=st.integers(0, 10**6),
    loss=st.floats(allow_nan=False),
)
def test_any_description_and_reply_come_back_as_sent(
    site: str, modalities: list[str], paired: bool, count: int, loss: float
) -> None:
    sent = SiteDescription(site, tuple(modalities), paired)
    assert SiteDescription.from_recorddict(over_the_wire(sent.to_recorddict())) == sent
    got = TrainReply.from_recorddict(
        over_the_wire(TrainReply(runs(1), count, loss).to_recorddict()), 1
    )
    assert (got.num_examples, got.train_loss) == (count, loss)


def _instruction(**config: Any) -> RecordDict:
    settings = {**FuseConfig().to_dict(), "model-id": "t1-v1", "round": 1, "layout": "x", **config}
    return RecordDict({"arrays": runs(1), "config": ConfigRecord(settings)})


def _reply(**metrics: Any) -> RecordDict:
    values = {"num-examples": 10, "train_loss": 0.5, **metrics}
    return RecordDict({"arrays": runs(1), "metrics": MetricRecord(values)})


@pytest.mark.parametrize(
    "decode,why",
    [
        (lambda: SiteDescription.from_recorddict(RecordDict()), "no 'site' record"),
        (
            lambda: SiteDescription.from_recorddict(
                RecordDict({"site": MetricRecord({"site": 1})})
            ),
            "the 'site' record is a MetricRecord; expected ConfigRecord",
        ),
        (
            lambda: SiteDescription.from_recorddict(
                RecordDict({"site": ConfigRecord({"site": "a", "modalities": ["g"]})})
            ),
            "the 'site' record has no 'paired'",
        ),
        (
            lambda: SiteDescription.from_recorddict(
                RecordDict({"site": ConfigRecord({"site": "a", "modalities": "g", "paired": True})})
            ),
            "site.modalities is 'g'; expected list",
        ),
        (
            lambda: SiteDescription.from_recorddict(
                RecordDict({"site": ConfigRecord({"site": "a", "modalities": [1], "paired": True})})
            ),
            "site.modalities is [1]; expected a list of names",
        ),
        (
            lambda: SiteDescription.from_recorddict(
                RecordDict({"site": ConfigRecord({"site": "a", "modalities": [], "paired": 1})})
            ),
            "site.paired is 1; expected bool",
        ),
        (lambda: TrainInstruction.from_recorddict(_instruction(round="2")), "config.round is '2'"),
        (
            lambda: TrainInstruction.from_recorddict(_instruction(round=True)),
            "config.round is True",
        ),
        (
            lambda: TrainInstruction.from_recorddict(_instruction(speed=3)),
            "config: unknown fuse settings ['speed']",
        ),
        (
            lambda: TrainInstruction.from_recorddict(_instruction(mode="knit")),
            "config: fuse mode must be one of",
        ),
        (
            lambda: TrainInstruction.from_recorddict(_instruction(sites="every")),
            "config: fuse sites must be one of paired, all, got 'every'",
        ),
        (
            lambda: TrainInstruction.from_recorddict(_instruction(folds=2)),
            "arrays ['trainable']; expected ['trainable', 'trainable-fold-0', 'trainable-fold-1']",
        ),
        (
            lambda: TrainInstruction.from_recorddict(
                RecordDict({"config": _instruction()["config"]})
            ),
            "the message has no 'arrays' record",
        ),
        (
            lambda: TrainReply.from_recorddict(_reply(), runs=2),
            "expected ['trainable', 'trainable-fold-0']",
        ),
        (
            lambda: TrainReply.from_recorddict(_reply(**{"num-examples": [1, 2]}), runs=1),
            "metrics.num-examples is [1, 2]; expected a number",
        ),
        (
            lambda: TrainReply.from_recorddict(RecordDict({"arrays": runs(1)}), runs=1),
            "the message has no 'metrics' record (it has ['arrays'])",
        ),
        (
            lambda: TrainReply.from_recorddict(
                RecordDict({"arrays": ConfigRecord({"a": 1}), "metrics": _reply()["metrics"]}),
                runs=1,
            ),
            "the 'arrays' record is a ConfigRecord; expected ArrayRecord",
        ),
        (
            lambda: TrainReply.from_recorddict(
                RecordDict({"arrays": runs(1), "metrics": MetricRecord({"num-examples": 3})}),
                runs=1,
            ),
            "the 'metrics' record has no 'train_loss'",
        ),
    ],
)
def test_a_malformed_message_is_refused_naming_what_is_wrong(
    decode: Callable[[], object], why: str
) -> None:
    with pytest.raises(MessageError) as refused:
        decode()
    assert why in str(refused.value)


values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.integers(-5, 5), max_size=3),
    st.lists(st.text(max_size=3), max_size=3),
)
keys = st.sampled_from(
    ["model-id", "round", "layout", "mode", "rounds", "lr", "folds", "seed", "site", "other"]
)


@settings(max_examples=200, deadline=None)
@given(
    config=st.dictionaries(keys, values, max_size=8),
    base=st.booleans(),
    arrays=st.lists(st.sampled_from(["trainable", "trainable-fold-0", "w"]), max_size=3),
)
def test_whatever_arrives_decodes_or_is_refused_with_a_message_error(
    config: dict[str, Any], base: bool, arrays: list[str]
) -> None:
    settings_ = (
        {**FuseConfig().to_dict(), "model-id": "m", "round": 1, "layout": "x"} if base else {}
    )
    record = ConfigRecord({**settings_, **config})
    packed = ArrayRecord({k: Array(np.zeros(2, np.float32)) for k in arrays})
    content = RecordDict(
        {"arrays": packed, "config": record, "site": record, "metrics": MetricRecord()}
    )
    for decode in (
        TrainInstruction.from_recorddict,
        SiteDescription.from_recorddict,
        lambda c: TrainReply.from_recorddict(c, 1),
    ):
        try:
            decode(content)
        except MessageError:
            pass
