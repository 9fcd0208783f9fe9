"""A version's recipe as its model file records it (model.pb: the kind, the block ids and the
``parameters`` map, which the card shows too): the one place that writes it and reads it back."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ..lego.recipe import RECIPE_KINDS, Recipe

WEIGHTS_KEY = "weights"  # the parameter that records a recipe's weights (a JSON list of numbers)
GROUPS_KEY = "groups"  # hierarchical Lego: each block's modality block (a JSON list of integers)


def write_recipe(recipe: Recipe, settings: Mapping[str, str]) -> dict[str, str]:
    """The model file's ``parameters`` of a version (its card shows the same): the fields of its
    recipe that the kind records (the weights as a JSON list, left out when equal), and its
    settings. The kind, the blocks and the parameters are the whole recipe on disk."""
    fields = {
        "latent_merge": recipe.latent_merge,
        "head_merge": recipe.head_merge,
        WEIGHTS_KEY: json.dumps([float(w) for w in recipe.weights]) if recipe.weights else "",
        GROUPS_KEY: json.dumps(list(recipe.groups)) if recipe.groups else "",
    }
    kept = {k: v for k, v in fields.items() if k in _records(recipe.kind) and v}
    if set(kept) & set(settings):
        raise ValueError(f"settings {sorted(set(kept) & set(settings))} belong to the recipe")
    return {**settings, **kept}


def read_recipe(
    kind: str, block_ids: Sequence[str], parameters: Mapping[str, str]
) -> tuple[Recipe, dict[str, str]]:
    """The recipe and the settings that :func:`write_recipe` wrote (a field the file does not
    record takes the recipe's default). A kind this code does not know keeps every parameter as a
    setting, so its record still reads and writes back unchanged."""
    records = _records(kind)
    own = {k: v for k, v in parameters.items() if k in records}
    text = own.pop(WEIGHTS_KEY, "")
    try:
        weights = tuple(float(w) for w in json.loads(text)) if text else ()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"recipe weights {text[:80]!r} are not a JSON list of numbers") from exc
    text = own.pop(GROUPS_KEY, "")
    try:
        groups = tuple(_index(g) for g in json.loads(text)) if text else ()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"recipe groups {text[:80]!r} are not a JSON list of integers") from exc
    recipe = Recipe(kind, tuple(block_ids), weights, groups=groups, **own)
    return recipe, {k: v for k, v in parameters.items() if k not in records}


def _index(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _records(kind: str) -> tuple[str, ...]:
    """The parameters a kind records of its recipe (a kind this code does not know: none)."""
    return RECIPE_KINDS.get(kind).records if kind in RECIPE_KINDS.names() else ()
