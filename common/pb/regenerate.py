"""Regenerate the protobuf/gRPC code in common/pb from the .proto sources in proto/.

Run ``python -m common.pb.regenerate`` after editing a .proto file and commit the result; a test
regenerates into a temporary folder and fails on any difference. This file is the only
hand-written one here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PB = Path(__file__).resolve().parent
REPO = PB.parents[1]
PROTO_ROOT = REPO / "proto"
PACKAGE_PREFIX = "common.pb."


def generate(out: Path = PB, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc (grpcio-tools) for every .proto under ``proto_root`` into ``out``; returns the
    files written. Imports between generated modules are rewritten to live under common.pb."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(proto_root.rglob("*.proto"))
    if not sources:
        raise FileNotFoundError(f"no .proto files under {proto_root}")
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *(str(s.relative_to(proto_root)) for s in sources)]
    import os

    cwd = os.getcwd()
    os.chdir(proto_root)
    try:
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed; see its message above")
    finally:
        os.chdir(cwd)
    written = []
    packages = {s.relative_to(proto_root).parent for s in sources}
    for pkg in packages:
        for parent in [pkg, *pkg.parents][:-1]:
            init = out / parent / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated protobuf/gRPC code (do not edit; see common/pb/regenerate.py)."""\n')
            written.append(init)
        for f in sorted((out / pkg).glob("*_pb2*.py*")):
            text = f.read_text()
            for p in packages:
                dotted = ".".join(p.parts)
                text = re.sub(rf"^from {re.escape(dotted)} import", f"from {PACKAGE_PREFIX}{dotted} import", text, flags=re.M)
                text = re.sub(rf"^import {re.escape(dotted)}\.", f"import {PACKAGE_PREFIX}{dotted}.", text, flags=re.M)
            f.write_text(text)
            written.append(f)
    return sorted(set(written))


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(REPO))
    sys.exit(0)
