"""The one mapping of a value the caller got wrong (a ValueError) to INVALID_ARGUMENT."""

from __future__ import annotations

import pytest

from coordinator.errors import Kind, RegistryError, as_invalid, not_found


def test_a_value_error_leaves_as_invalid_with_its_message_alone() -> None:
    with pytest.raises(RegistryError) as err, as_invalid():
        raise ValueError("n_bins must be >= 2, got 1")
    assert err.value.kind is Kind.INVALID and err.value.message == "n_bins must be >= 2, got 1"
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_other_errors_pass_unchanged() -> None:
    with pytest.raises(RegistryError) as err, as_invalid():
        raise not_found("task 't9' does not exist")
    assert err.value.kind is Kind.NOT_FOUND
    with pytest.raises(KeyError), as_invalid():
        raise KeyError("x")
