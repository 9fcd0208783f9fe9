"""Every refusal the registry issue lists, over real mutual TLS on loopback: the exact status,
and nothing stored."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import torch
from safetensors.torch import save as st_save

from common.artifacts import load_signing_key, read_block_files, sha256_bytes, sign
from common.artifacts.blockfile import MANIFEST, SIGNATURE, WEIGHTS
from common.client import CallError, RegistryClient, TLSFiles
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.pb.mmlego.v1 import registry_pb2_grpc as pb_grpc
from common.serde import manifest_to_bytes
from coordinator.config import CoordinatorConfig
from tests.coordinator.conftest import NO_RETRY, Consortium, serving, signed_block, stored
from tests.factories import block

Coord = tuple[str, CoordinatorConfig]


def refused(fn: object, code: grpc.StatusCode, match: str = "") -> CallError:
    with pytest.raises(CallError) as info:
        fn()  # type: ignore[operator]
    assert info.value.code == code, info.value
    assert match.lower() in info.value.message.lower(), info.value.message
    return info.value


def push(consortium: Consortium, address: str, kit: str, folder: Path) -> object:
    with RegistryClient(address, consortium.tls(kit), timeout_s=10) as c:
        return c.push(folder, NO_RETRY)


@pytest.mark.parametrize("kit", ["rogue", "hosp-old"])
def test_certificates_the_ca_did_not_issue_or_that_expired_fail_the_handshake(
    consortium: Consortium, coordinator: Coord, kit: str, tmp_path: Path
) -> None:
    address, cfg = coordinator
    folder = signed_block(consortium, "hosp-a", tmp_path / "b")
    with RegistryClient(address, consortium.tls(kit), timeout_s=5) as c:
        err = refused(
            lambda: c.push(folder, NO_RETRY),
            grpc.StatusCode.UNAVAILABLE,
            "refused this kit's certificate",
        )
        refused(c.tasks, grpc.StatusCode.UNAVAILABLE)
    assert "certificate" in err.message
    assert stored(cfg) == (0, 0)


def test_no_client_certificate_fails_the_handshake(
    consortium: Consortium, coordinator: Coord
) -> None:
    address, cfg = coordinator
    creds = grpc.ssl_channel_credentials(
        root_certificates=(consortium.kit("ops") / "ca.crt").read_bytes()
    )
    with grpc.secure_channel(address, creds) as ch:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.BlockRegistryStub(ch).ListTasks(pb.ListTasksRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert stored(cfg) == (0, 0)


def test_a_revoked_certificate_is_refused_without_a_restart(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    folder = signed_block(consortium, "hosp-r", tmp_path / "b")
    with RegistryClient(address, consortium.tls("hosp-r"), timeout_s=10) as c:
        assert c.tasks()  # accepted before revocation
        consortium.ca.revoke("hosp-r")
        refused(lambda: c.push(folder, NO_RETRY), grpc.StatusCode.UNAUTHENTICATED, "revoked")
        refused(c.tasks, grpc.StatusCode.UNAUTHENTICATED, "revoked")
    assert stored(cfg) == (0, 0)


def test_sites_may_not_call_admin_rpcs_and_admins_may_not_upload(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    with RegistryClient(address, consortium.tls("hosp-a")) as c:
        refused(lambda: c.merge("t1"), grpc.StatusCode.PERMISSION_DENIED, "Merge is for admin")
        refused(lambda: c.withdraw("hosp-b", "x"), grpc.StatusCode.PERMISSION_DENIED)
        refused(
            lambda: c.call("Fuse", pb.FuseRequest(model_id="x")), grpc.StatusCode.PERMISSION_DENIED
        )
    folder = signed_block(consortium, "hosp-a", tmp_path / "b")
    with RegistryClient(address, consortium.tls("ops")) as admin:
        refused(lambda: admin.push(folder, NO_RETRY), grpc.StatusCode.PERMISSION_DENIED, "for site")
        refused(
            lambda: admin.call("Fuse", pb.FuseRequest(model_id="x")), grpc.StatusCode.UNIMPLEMENTED
        )
    assert stored(cfg) == (0, 0)


def test_a_site_may_upload_only_its_enrolled_modalities_under_its_own_name(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    wrong_modality = signed_block(consortium, "hosp-a", tmp_path / "m", modality="clinical")
    refused(
        lambda: push(consortium, address, "hosp-a", wrong_modality),
        grpc.StatusCode.PERMISSION_DENIED,
        "enrolled for",
    )
    as_other = signed_block(
        consortium, "hosp-a", tmp_path / "o"
    )  # names hosp-a, signed by hosp-a...
    refused(
        lambda: push(consortium, address, "hosp-b", as_other),
        grpc.StatusCode.UNAUTHENTICATED,
        "signature",
    )  # ...sent by b
    unknown_task = signed_block(consortium, "hosp-a", tmp_path / "t", task_id="nope")
    refused(
        lambda: push(consortium, address, "hosp-a", unknown_task),
        grpc.StatusCode.NOT_FOUND,
        "task 'nope'",
    )
    assert stored(cfg) == (0, 0)


def resign(consortium: Consortium, folder: Path, site: str = "hosp-a") -> None:
    raw = (folder / MANIFEST).read_bytes()
    (folder / SIGNATURE).write_bytes(
        sign(raw, load_signing_key(consortium.kit(site) / "signing.key"))
    )


def test_tampering_is_refused(consortium: Consortium, coordinator: Coord, tmp_path: Path) -> None:
    address, cfg = coordinator
    weights = signed_block(consortium, "hosp-a", tmp_path / "w")
    raw = bytearray((weights / WEIGHTS).read_bytes())
    raw[-5] ^= 0x10
    (weights / WEIGHTS).write_bytes(bytes(raw))
    refused(
        lambda: push(consortium, address, "hosp-a", weights), grpc.StatusCode.DATA_LOSS, "sha256"
    )

    manifest = signed_block(consortium, "hosp-a", tmp_path / "m")
    m = read_block_files(manifest).manifest
    (manifest / MANIFEST).write_bytes(
        manifest_to_bytes(replace(m, train_stats={"n_train": 4000.0}))
    )
    refused(
        lambda: push(consortium, address, "hosp-a", manifest),
        grpc.StatusCode.UNAUTHENTICATED,
        "signature",
    )

    wrong_key = signed_block(consortium, "hosp-a", tmp_path / "k")
    resign(consortium, wrong_key, site="hosp-b")
    refused(
        lambda: push(consortium, address, "hosp-a", wrong_key),
        grpc.StatusCode.UNAUTHENTICATED,
        "signature",
    )
    assert stored(cfg) == (0, 0)


def rewrite_weights(consortium: Consortium, folder: Path, state: dict[str, torch.Tensor]) -> None:
    """Weights that hash as the (re-signed) manifest says: only the deeper checks can catch them."""
    data = st_save(state)
    (folder / WEIGHTS).write_bytes(data)
    m = read_block_files(folder).manifest
    (folder / MANIFEST).write_bytes(
        manifest_to_bytes(replace(m, weights_sha256=sha256_bytes(data), weights_size=len(data)))
    )
    resign(consortium, folder)


def test_nan_weights_and_a_wrong_latent_shape_are_refused(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    b = block(modality="genes")
    nan = signed_block(consortium, "hosp-a", tmp_path / "n", b=b)
    state = {k: v.clone() for k, v in b.state_dict().items()}
    state["steps.1.ff.net.0.weight"][0, 0] = float("nan")
    rewrite_weights(consortium, nan, state)
    refused(
        lambda: push(consortium, address, "hosp-a", nan), grpc.StatusCode.INVALID_ARGUMENT, "NaN"
    )

    wide = block(modality="genes")
    wide = type(wide)(wide.config.with_(latent_rows=7))
    shape = signed_block(consortium, "hosp-a", tmp_path / "s", b=wide)
    refused(
        lambda: push(consortium, address, "hosp-a", shape),
        grpc.StatusCode.INVALID_ARGUMENT,
        "latent shape is [7, 8]",
    )

    lying = signed_block(consortium, "hosp-a", tmp_path / "l")
    state = {k: v for k, v in block(modality="genes").state_dict().items() if k != "latent"}
    rewrite_weights(consortium, lying, state)  # manifest and weights agree, but not with the config
    refused(
        lambda: push(consortium, address, "hosp-a", lying),
        grpc.StatusCode.INVALID_ARGUMENT,
        "latent",
    )
    assert stored(cfg) == (0, 0)


def test_an_oversized_block_is_refused_before_its_bytes_are_read(
    consortium: Consortium, tmp_path: Path
) -> None:
    cfg = consortium.config(store=tmp_path / "store", max_block_bytes=10_000)
    with serving(consortium, cfg) as address:
        big = signed_block(consortium, "hosp-a", tmp_path / "b")
        refused(
            lambda: push(consortium, address, "hosp-a", big),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "at most 10000 bytes",
        )
        assert stored(cfg) == (0, 0)
        assert not list((cfg.store / "uploads").iterdir())


def raw_stream(address: str, tls: TLSFiles, messages: list[bytes]) -> grpc.RpcError:
    """Send arbitrary bytes as UploadBlock messages."""
    creds = grpc.ssl_channel_credentials(
        tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes()
    )
    with grpc.secure_channel(address, creds) as ch:
        call = ch.stream_unary(
            "/mmlego.v1.BlockRegistry/UploadBlock",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(iter(messages), timeout=10)
    return info.value


def test_a_truncated_stream_and_random_bytes_are_refused(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    tls = consortium.tls("hosp-a")
    err = raw_stream(address, tls, [os.urandom(4096) for _ in range(4)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in (err.details() or "")  # type: ignore[attr-defined]
    assert raw_stream(address, tls, []).code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    data_only = pb.UploadChunk(data=os.urandom(1000), offset=0).SerializeToString()
    assert raw_stream(address, tls, [data_only]).code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]

    folder = signed_block(consortium, "hosp-a", tmp_path / "b")
    files = read_block_files(folder)

    def header(upload_id: str, offset: int = 0) -> bytes:
        signed = pb.SignedManifest(manifest=files.manifest_bytes, signature=files.signature)
        return pb.UploadChunk(
            header=pb.UploadHeader(upload_id=upload_id, manifest=signed), offset=offset
        ).SerializeToString()

    size = files.manifest.weights_size
    random_data = pb.UploadChunk(data=os.urandom(size), offset=0).SerializeToString()
    err = raw_stream(address, tls, [header("u0"), random_data])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "safetensors" in (err.details() or "")  # type: ignore[attr-defined]
    half = pb.UploadChunk(
        data=files.weights.read_bytes()[: size // 2], offset=0
    ).SerializeToString()
    err = raw_stream(address, tls, [header("u1"), half])
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "incomplete" in (
        err.details() or ""
    )  # type: ignore[attr-defined]
    gap = pb.UploadChunk(data=b"x", offset=size - 1).SerializeToString()
    assert raw_stream(address, tls, [header("u2"), gap]).code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    too_big = pb.UploadChunk(data=b"x" * (size + 10), offset=size // 2).SerializeToString()
    assert (
        raw_stream(address, tls, [header("u1", size // 2), too_big]).code()
        == grpc.StatusCode.INVALID_ARGUMENT
    )  # type: ignore[attr-defined]
    assert stored(cfg) == (0, 0)
