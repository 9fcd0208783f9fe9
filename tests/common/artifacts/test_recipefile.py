"""A version's recipe in its model file: written and read back in one place; files written before
the recipe was a type read as their recipe and write back byte for byte."""

from __future__ import annotations

import pytest

from common import serde
from common.artifacts.recipefile import read_recipe, write_recipe
from common.lego.recipe import Recipe
from common.pb.mmlego.v1 import registry_pb2 as pb
from tests.factories import distinct_blocks as blocks

IDS = ("ab" * 32, "cd" * 32)
FUSE_SETTINGS = {
    "mode": "stack",
    "rounds": "6",
    "epochs": "1",
    "lr": "0.0005",
    "batch_size": "32",
    "proximal_mu": "0.0",
    "seed": "0",
    "patience": "2",
    "folds": "0",
    "strategy": "fedavg",
}
# The parameters maps as the coordinator wrote them before Recipe existed (coordinator/merging.py
# and fusing.py): kind, parameters, and the recipe these files mean.
WRITTEN = [
    (
        "merge",
        {"latent_merge": "harmonic", "head_merge": "spherical", "candidate": "uniform"},
        Recipe("merge", IDS),
        {"candidate": "uniform"},
    ),
    (
        "merge",
        {
            "latent_merge": "arithmetic",
            "head_merge": "linear",
            "weights": "[1.292893, 0.707107]",
            "candidate": "size",
        },
        Recipe("merge", IDS, (1.292893, 0.707107), "arithmetic", "linear"),
        {"candidate": "size"},
    ),
    ("ensemble", {"candidate": "ensemble"}, Recipe("ensemble", IDS), {"candidate": "ensemble"}),
    (
        "ensemble",
        {"weights": "[0.666667, 1.333333]", "candidate": "balanced-ensemble"},
        Recipe("ensemble", IDS, (0.666667, 1.333333)),
        {"candidate": "balanced-ensemble"},
    ),
    (
        "fuse",
        {**FUSE_SETTINGS, "head_merge": "spherical", "weights": "[2.0, 1.0]"},
        Recipe("fuse", IDS, (2.0, 1.0)),
        FUSE_SETTINGS,
    ),
    (
        "fuse",
        {**FUSE_SETTINGS, "head_merge": "linear"},
        Recipe("fuse", IDS, (), head_merge="linear"),
        FUSE_SETTINGS,
    ),
]


def message(kind: str, parameters: dict[str, str], block_ids: tuple[str, ...] = IDS) -> bytes:
    """A ModelVersion as the coordinator stored it, spelled with the protobuf API only."""
    msg = pb.ModelVersion(
        model_id="t1-v1",
        task_id="t1",
        block_ids=list(block_ids),
        recipe=kind,
        parameters=parameters,
        weights_sha256="ef" * 32,
        weights_size=10,
        card_json='{"model_id": "t1-v1"}',
        code_version="0.1.0",
    )
    msg.created_at.FromJsonString("2026-12-01T13:00:00Z")
    return msg.SerializeToString(deterministic=True)


@pytest.mark.parametrize(("kind", "parameters", "recipe", "settings"), WRITTEN)
def test_a_model_file_written_before_reads_as_its_recipe_and_writes_back_byte_for_byte(
    kind: str, parameters: dict[str, str], recipe: Recipe, settings: dict[str, str]
) -> None:
    raw = message(kind, parameters)
    record = serde.model_from_bytes(raw)
    assert record.recipe == recipe and record.settings == settings
    assert record.block_ids == IDS
    assert serde.model_to_bytes(record) == raw
    assert write_recipe(recipe, settings) == parameters  # a new version: the same map


def test_a_kind_this_code_does_not_know_reads_and_writes_back_unchanged() -> None:
    raw = message("soup", {"weights": "not json", "latent_merge": "x"})
    record = serde.model_from_bytes(raw)
    assert record.settings == {"weights": "not json", "latent_merge": "x"}
    assert serde.model_to_bytes(record) == raw
    with pytest.raises(ValueError, match="unknown recipe kind 'soup'; known: ensemble, fuse"):
        record.recipe.make(blocks())


def test_weights_that_are_not_a_list_of_numbers_for_every_block_are_refused() -> None:
    with pytest.raises(ValueError, match="not a JSON list of numbers"):
        read_recipe("merge", IDS, {"weights": "[1, 2"})
    with pytest.raises(ValueError, match="not a JSON list of numbers"):
        read_recipe("ensemble", IDS, {"weights": '{"a": 1}'})
    with pytest.raises(ValueError, match="recipe has 3 weights for 2 blocks"):
        read_recipe("merge", IDS, {"weights": "[1, 2, 3]"})
    with pytest.raises(ValueError, match=r"settings \['head_merge'\] belong to the recipe"):
        write_recipe(Recipe("fuse", IDS), {"head_merge": "linear"})
