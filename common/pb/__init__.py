"""Generated protobuf/gRPC code of the mmlego.v1 protocol (regenerate with python -m common.pb.regenerate)."""
