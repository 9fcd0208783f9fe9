"""Model folders: a pulled version rebuilt from its block folders and its own weights checked
against its recipe, kind by kind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from common import serde
from common.artifacts import IntegrityError, save_block, sha256_bytes
from common.artifacts.modelfile import load_model_folder, version_weights, write_model_folder
from common.artifacts.recipefile import write_recipe
from common.fuse import fused_model, fused_of
from common.lego import LegoBlock, LegoEnsemble, LegoFuse, LegoMerge, ModalityInput
from common.lego.recipe import Recipe
from common.pb.mmlego.v1 import registry_pb2 as pb
from tests.common.artifacts.test_recipefile import FUSE_SETTINGS, message
from tests.factories import distinct_blocks as blocks


def _folder(
    tmp_path: Path,
    recipe: Recipe,
    own: bytes,
    settings: dict[str, str],
    of: list[LegoBlock] | None = None,
) -> Path:
    """A pulled model folder of two blocks (or ``of``): ``recipe`` (blocks filled in) with
    weights ``own``."""
    out = tmp_path / "model"
    ids = []
    for i, b in enumerate(of or blocks()):
        manifest = save_block(b, tmp_path / f"staging-{i}")
        ids.append(manifest.weights_sha256)
        shutil.move(tmp_path / f"staging-{i}", out / "blocks" / manifest.weights_sha256)
    kind, params = recipe.kind, write_recipe(recipe, settings)
    raw = pb.ModelVersion.FromString(message(kind, params, tuple(ids)))
    raw.weights_sha256, raw.weights_size = sha256_bytes(own), len(own)
    data = raw.SerializeToString(deterministic=True)
    write_model_folder(out, data, serde.model_from_bytes(data), own)
    return out


def _heads() -> list[dict[str, torch.Tensor]]:
    return [b.head.state_dict() for b in blocks()]


def _x() -> dict[str, ModalityInput]:
    torch.manual_seed(3)
    return {"a": ModalityInput(torch.randn(4, 5)), "b": ModalityInput(torch.randn(4, 5))}


def test_a_merge_folder_loads_as_the_merge_of_its_blocks_and_a_changed_head_is_caught(
    tmp_path: Path,
) -> None:
    recipe = Recipe("merge", (), (3.0, 1.0), "arithmetic", "linear")
    folder = _folder(tmp_path, recipe, version_weights(recipe, _heads()), {"candidate": "size"})
    model, record = load_model_folder(folder)
    assert isinstance(model, LegoMerge) and record.recipe.weights == (3.0, 1.0)
    assert torch.equal(model(_x()), recipe.make(blocks())(_x()))
    other = Recipe("merge", (), (1.0, 3.0), "arithmetic", "linear")
    folder = _folder(tmp_path / "2", recipe, version_weights(other, _heads()), {})
    with pytest.raises(IntegrityError, match="merged head differs from the merge of its blocks"):
        load_model_folder(folder)


def test_an_ensemble_folder_loads_with_its_weights_and_other_weights_are_caught(
    tmp_path: Path,
) -> None:
    recipe = Recipe("ensemble", (), (3.0, 1.0))
    model, _ = load_model_folder(_folder(tmp_path, recipe, version_weights(recipe, _heads()), {}))
    assert isinstance(model, LegoEnsemble) and model.weights == (3.0, 1.0)
    wrong = st_save({"ensemble.weights": torch.tensor([1.0, 1.0], dtype=torch.float64)})
    with pytest.raises(IntegrityError, match="does not match its recipe"):
        load_model_folder(_folder(tmp_path / "2", recipe, wrong, {}))


def test_a_fuse_folder_loads_its_trained_weights_in_its_mode(tmp_path: Path) -> None:
    parent = Recipe("merge", (), (2.0, 1.0), head_merge="linear")
    trained = fused_model(blocks(), "weave", parent)
    with torch.no_grad():
        trained.latent.add_(0.25)
    own = st_save({k: v.detach().contiguous() for k, v in trained.state_dict().items()})
    settings = {**FUSE_SETTINGS, "mode": "weave"}
    model, record = load_model_folder(_folder(tmp_path, parent.fused(), own, settings))
    assert isinstance(model, LegoFuse) and model.mode == "weave"
    assert record.recipe.head_merge == "linear" and record.settings == settings
    assert torch.equal(model(_x()), trained.eval()(_x()))


def test_a_folder_whose_weights_are_not_the_recorded_ones_is_refused(tmp_path: Path) -> None:
    recipe = Recipe("merge")
    folder = _folder(tmp_path, recipe, version_weights(recipe, _heads()), {})
    (folder / "weights.safetensors").write_bytes(b"other bytes")
    with pytest.raises(IntegrityError, match="do not match the version's sha256"):
        load_model_folder(folder)


def test_a_grouped_folder_builds_only_its_modality_blocks_the_same_as_its_recipe(
    tmp_path: Path,
) -> None:
    from tests.common.lego.test_soup import inputs, trained

    bs = [trained("a", seed=1), trained("b", "bag", seed=2, f=4), trained("a", seed=3)]
    recipe = Recipe("merge", (), (1.0, 2.0, 3.0), groups=(0, 1, 0))
    heads = [b.head.state_dict() for b in bs]
    model, record = load_model_folder(
        _folder(tmp_path, recipe, version_weights(recipe, heads), {}, bs)
    )
    assert isinstance(model, LegoMerge) and record.recipe.groups == (0, 1, 0)
    assert len(model.block_list) == 2 and model.members == []  # the modality blocks only
    assert torch.equal(model(inputs()), recipe.make(bs)(inputs()))
    # the LegoFuse a round starts from: of the made modality blocks, bit for bit the coordinator's
    start, want = fused_of(model, "stack", record.recipe), fused_model(bs, "stack", recipe)
    assert all(torch.equal(v, want.state_dict()[k]) for k, v in start.state_dict().items())
    mixed = Recipe("merge", (), (), groups=(0, 0, 1))  # a group of two modalities
    with pytest.raises(IntegrityError, match="blocks of one modality"):
        load_model_folder(_folder(tmp_path / "2", mixed, version_weights(recipe, heads), {}, bs))
