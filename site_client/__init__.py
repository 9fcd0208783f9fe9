"""mmlego site side: local training, upload, daemon (built out by the registry issue)."""

__all__: list[str] = []
