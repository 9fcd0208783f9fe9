"""TaskSpec validation and round trip."""

import pytest

from common.tasks import TaskSpec


def test_round_trip() -> None:
    spec = TaskSpec("survival", n_bins=3, bin_edges=(1.0, 2.5), alpha=0.2)
    assert TaskSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "regression"}, "unknown task kind 'regression'; known: survival, classification"),
        ({"kind": "survival", "n_bins": 3, "bin_edges": (1.0,)}, "needs 2 inner bin edges"),
        ({"kind": "survival", "n_bins": 3, "bin_edges": (2.0, 1.0)}, "increase strictly"),
        ({"kind": "classification", "n_classes": 1}, "n_classes >= 2"),
    ],
)
def test_invalid_specs_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskSpec(**kwargs)


def test_unknown_field() -> None:
    with pytest.raises(ValueError, match="unknown fields: colour"):
        TaskSpec.from_dict({"kind": "survival", "colour": 1})
