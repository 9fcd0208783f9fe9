"""mmlego coordinator: block registry, storage, merge service (built out by the registry issue)."""

__all__: list[str] = []
