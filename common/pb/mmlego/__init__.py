"""Generated protobuf/gRPC code (do not edit; see common/pb/regenerate.py)."""
