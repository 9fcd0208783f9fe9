"""The default addresses of a consortium, named once: the config schemas (coordinator.toml,
site.toml, admin.toml), the kits and the CLIs read them from here."""

REGISTRY_PORT = 50051  # the coordinator's gRPC registry
SUPERLINK_PORT = 9093  # Flower's SuperLink (Fleet API), for LegoFuse rounds
LOCAL_REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
LOCAL_SUPERLINK = f"127.0.0.1:{SUPERLINK_PORT}"
