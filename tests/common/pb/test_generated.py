"""The committed protobuf/gRPC code is exactly what the .proto sources generate."""

import filecmp
from pathlib import Path

from common.pb import regenerate


def test_generated_code_matches_the_proto_sources(tmp_path: Path) -> None:
    fresh = regenerate.generate(out=tmp_path)
    committed = regenerate.PB
    assert fresh, "nothing was generated"
    for path in fresh:
        rel = path.relative_to(tmp_path)
        assert (committed / rel).is_file(), (
            f"{rel} is generated but not committed; run python -m common.pb.regenerate"
        )
        assert filecmp.cmp(path, committed / rel, shallow=False), (
            f"{rel} differs from the .proto sources; regenerate it"
        )
    generated = {p.relative_to(committed) for p in committed.rglob("*_pb2*.py*")}
    assert generated == {p.relative_to(tmp_path) for p in fresh if "_pb2" in p.name}, (
        "stale generated files in common/pb"
    )


def test_every_rpc_and_field_is_commented() -> None:
    sources = sorted((regenerate.PROTO_ROOT / "mmlego" / "v1").glob("*.proto"))
    assert [p.name for p in sources] == ["admin.proto", "evaluation.proto", "registry.proto"]
    for source in sources:
        text = source.read_text().splitlines()
        assert sum(line.strip().startswith("service ") for line in text) == 1, (
            f"{source.name}: one service per file"
        )
        for i, line in enumerate(text):
            s = line.strip()
            is_rpc = s.startswith("rpc ")
            is_field = (
                s.endswith(";")
                and "=" in s
                and not s.startswith(("syntax", "package", "import", "option", "//"))
            )
            if is_rpc or is_field:
                assert text[i - 1].strip().startswith("//"), (
                    f"{source.name} line {i + 1} has no comment: {s}"
                )


def test_a_message_round_trips() -> None:
    from common.pb.mmlego.v1 import registry_pb2 as pb

    m = pb.BlockManifest(
        task_id="t", site="hosp-a", modality="genes", weights_sha256="ab" * 32, weights_size=10
    )
    m.tensors.add(name="latent", shape=[16, 64], dtype="F32")
    m.train_stats["n_train"] = 100
    assert pb.BlockManifest.FromString(m.SerializeToString()) == m
