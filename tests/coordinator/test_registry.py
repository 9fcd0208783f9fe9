"""Registry behaviour over real mutual TLS: resumable and idempotent uploads, merges of the latest
blocks, new sites and withdrawals, listings, downloads, health, plaintext on loopback only."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.artifacts import load_block, load_signing_key, save_block, sha256_file
from common.artifacts.blockfile import WEIGHTS
from common.artifacts.modelfile import load_model_folder
from common.client import CallError, RegistryClient, Retry
from coordinator.config import CoordinatorConfig
from coordinator.server import serve
from tests.coordinator.conftest import TASK, Consortium, signed_block, stored
from tests.factories import block, tabular

Coord = tuple[str, CoordinatorConfig]


def test_a_cut_upload_resumes_and_stores_the_identical_blob(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    from common.lego import LegoBlock
    from tests.factories import block

    big = LegoBlock(
        block(modality="genes").config.with_(
            encoder=block().config.encoder.__class__(
                kind="tabular", in_features=20_000, token_dim=16, n_tokens=3, hidden=32, dropout=0.0
            )
        )
    )
    folder = signed_block(consortium, "hosp-a", tmp_path / "b", b=big)
    size = (folder / WEIGHTS).stat().st_size
    assert size > 2 << 20  # several chunks
    offsets: list[int] = []
    with RegistryClient(address, consortium.tls("hosp-a")) as c:
        record, present = c.push(
            folder,
            Retry(attempts=3, base_s=0.01),
            limit_bytes=size // 2,
            on_attempt=lambda attempt, offset: offsets.append(offset),
        )
    assert (
        not present and offsets[0] == 0 and 0 < offsets[1] < size
    )  # the second attempt resumed mid-file
    blob = cfg.store / "blobs" / record.block_id[:2] / record.block_id
    assert sha256_file(blob) == sha256_file(folder / WEIGHTS) == record.block_id
    assert blob.read_bytes() == (folder / WEIGHTS).read_bytes()
    assert not list((cfg.store / "uploads").iterdir())  # the partial file became the blob


def test_an_identical_reupload_is_idempotent(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    folder = signed_block(consortium, "hosp-a", tmp_path / "b")
    with RegistryClient(address, consortium.tls("hosp-a")) as c:
        first, p1 = c.push(folder)
        again, p2 = c.push(folder)
    assert (p1, p2) == (False, True) and first.block_id == again.block_id
    assert stored(cfg) == (1, 1)
    with RegistryClient(address, consortium.tls("hosp-b")) as other:
        other.push(signed_block(consortium, "hosp-b", tmp_path / "c", modality="clinical", seed=9))
        with pytest.raises(CallError) as replay:
            other.push(folder, Retry(attempts=1))  # hosp-a's signed block, replayed by hosp-b
        assert replay.value.code == grpc.StatusCode.UNAUTHENTICATED
        same_weights = signed_block(
            consortium, "hosp-b", tmp_path / "d", modality="clinical", seed=0
        )
        with pytest.raises(CallError) as copy:
            other.push(same_weights, Retry(attempts=1))  # hosp-a's weights, signed by hosp-b
        assert copy.value.code == grpc.StatusCode.ALREADY_EXISTS and "hosp-a" in copy.value.message
    assert stored(cfg) == (2, 2)


def predictions(model: torch.nn.Module, n: int = 6) -> torch.Tensor:
    from common.lego import ModalityInput

    g, c = tabular(b=n, f=5, seed=3), tabular(b=n, f=5, seed=4)
    present = torch.tensor([True, True, False, True, False, True][:n])
    inputs = {"genes": g, "clinical": ModalityInput(c.x, None, present)}
    with torch.no_grad():
        return model(inputs)


def test_merge_pull_is_bit_identical_and_follows_new_and_withdrawn_sites(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, _ = coordinator
    a = signed_block(consortium, "hosp-a", tmp_path / "a", modality="genes", seed=1)
    b = signed_block(consortium, "hosp-b", tmp_path / "b", modality="clinical", seed=2)
    with (
        RegistryClient(address, consortium.tls("hosp-a")) as site_a,
        RegistryClient(address, consortium.tls("ops")) as admin,
    ):
        site_a.push(a)
        v1 = admin.merge("t1")
        assert len(v1.block_ids) == 1
        with RegistryClient(address, consortium.tls("hosp-b")) as site_b:
            site_b.push(b)  # a new site joins: merge again, nobody retrains
        v2 = admin.merge("t1")
        assert set(v2.block_ids) == set(v1.block_ids) | {load_block(b)[1].weights_sha256}
        assert v2.card["blocks"][0]["signer"]["signing_key_sha256"] and v2.card["code_version"]
        site_a.pull_model(v2.model_id, tmp_path / "pulled")
        pulled, record = load_model_folder(tmp_path / "pulled")
        assert (tmp_path / "pulled" / "card.md").read_text().startswith(f"# Model {v2.model_id}")
        local = record.recipe.make([load_block(a)[0].eval(), load_block(b)[0].eval()])
        local_rev = record.recipe.make([load_block(b)[0].eval(), load_block(a)[0].eval()])
        assert torch.equal(
            predictions(pulled),
            predictions(local_rev if pulled.modalities[0] == "clinical" else local),
        )
        admin.withdraw("hosp-b", "left the consortium")
        v3 = admin.merge("t1")
        assert v3.block_ids == v1.block_ids and v3.model_id == "t1-v3"
        assert [m.model_id for m in admin.models("t1")] == ["t1-v3", "t1-v2", "t1-v1"]
        assert admin.model("t1-v2").block_ids == v2.block_ids  # versions are immutable
        assert {s.name: s.withdrawn for s in admin.sites()} == {"hosp-a": False, "hosp-b": True}
        assert len(admin.blocks("t1")) == 1 and len(admin.blocks("t1", include_withdrawn=True)) == 2
        with pytest.raises(CallError) as info:
            site_b_again = RegistryClient(address, consortium.tls("hosp-b"))
            site_b_again.push(
                signed_block(consortium, "hosp-b", tmp_path / "b2", modality="clinical", seed=5),
                Retry(attempts=1),
            )
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(CallError) as info:
            admin.merge("nope")
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(CallError) as info:
            admin.create_task(TASK)
        assert info.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_health_service_answers_serving(consortium: Consortium, coordinator: Coord) -> None:
    address, _ = coordinator
    t = consortium.tls("hosp-a")
    creds = grpc.ssl_channel_credentials(t.ca.read_bytes(), t.key.read_bytes(), t.cert.read_bytes())
    with grpc.secure_channel(address, creds) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "mmlego.v1.BlockRegistry"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_only_on_loopback_and_still_authenticated(
    consortium: Consortium, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="loopback"):
        with serve(consortium.config(store=tmp_path / "s1", host="0.0.0.0", insecure=True)):
            pass
    cfg = consortium.config(store=tmp_path / "s2", insecure=True)
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"
        with RegistryClient(address, consortium.tls("ops"), insecure=True) as admin:
            admin.create_task(TASK)
        with RegistryClient(address, consortium.tls("hosp-a"), insecure=True) as site:
            site.push(signed_block(consortium, "hosp-a", tmp_path / "b"))
            with pytest.raises(CallError) as info:
                site.merge("t1")
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
        with grpc.insecure_channel(address) as ch:  # no certificate at all
            from common.pb.mmlego.v1 import registry_pb2 as pb
            from common.pb.mmlego.v1 import registry_pb2_grpc as pb_grpc

            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.BlockRegistryStub(ch).ListTasks(pb.ListTasksRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_pull_catches_a_block_altered_on_the_coordinators_disk(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    folder = signed_block(consortium, "hosp-a", tmp_path / "a")
    with (
        RegistryClient(address, consortium.tls("hosp-a")) as site,
        RegistryClient(address, consortium.tls("ops")) as admin,
    ):
        record, _ = site.push(folder)
        model = admin.merge("t1")
        blob = cfg.store / "blobs" / record.block_id[:2] / record.block_id
        raw = bytearray(blob.read_bytes())
        raw[-3] ^= 0x01
        blob.write_bytes(bytes(raw))
        from common.artifacts import IntegrityError

        with pytest.raises(IntegrityError, match="hash"):
            site.pull_model(model.model_id, tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()  # nothing half-written is left behind


def test_list_blocks_pages_and_the_client_reads_every_page(
    consortium: Consortium,
    coordinator: tuple[str, CoordinatorConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the soak (docs/RELIABILITY.md): with ~1000 blocks one ListBlocks reply passed the
    2 MiB message limit and every list failed. Replies are now pages (by count and by bytes)."""
    from common.pb.mmlego.v1 import registry_pb2 as pb

    address, _ = coordinator
    with RegistryClient(address, consortium.tls("hosp-a")) as site:
        pushed = [
            site.push(signed_block(consortium, "hosp-a", tmp_path / f"b{i}", seed=i))[0].block_id
            for i in range(5)
        ]
        assert [b.block_id for b in site.blocks("t1")] == pushed[
            ::-1
        ]  # newest first, across pages of 100
        first = site.call("ListBlocks", pb.ListBlocksRequest(task_id="t1", page_size=2))
        assert [b.block_id for b in first.blocks] == pushed[:2:-1] and first.next_page_token
        second = site.call(
            "ListBlocks",
            pb.ListBlocksRequest(task_id="t1", page_size=2, page_token=first.next_page_token),
        )
        third = site.call(
            "ListBlocks",
            pb.ListBlocksRequest(task_id="t1", page_size=2, page_token=second.next_page_token),
        )
        got = [b.block_id for r in (first, second, third) for b in r.blocks]
        assert got == pushed[::-1] and not third.next_page_token
        with pytest.raises(CallError) as info:
            site.call("ListBlocks", pb.ListBlocksRequest(task_id="t1", page_token="../x"))
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        monkeypatch.setattr(
            "coordinator.servicer.PAGE_BYTES", 1
        )  # every reply stops after one block: the byte limit
        one = site.call("ListBlocks", pb.ListBlocksRequest(task_id="t1"))
        assert len(one.blocks) == 1 and one.next_page_token
        assert [b.block_id for b in site.blocks("t1")] == pushed[
            ::-1
        ]  # the client follows five pages


def test_list_models_pages_too(
    consortium: Consortium,
    coordinator: tuple[str, CoordinatorConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by bench/console_bench.py: 20 versions of 400 blocks each (their cards) passed the
    message limit in one ListModels reply, and the console's versions page failed. Pages now."""
    from common.pb.mmlego.v1 import registry_pb2 as pb

    address, _ = coordinator
    with RegistryClient(address, consortium.tls("hosp-a")) as site:
        site.push(signed_block(consortium, "hosp-a", tmp_path / "b", seed=1))
    with RegistryClient(address, consortium.tls("ops")) as admin:
        made = [admin.merge("t1").model_id for _ in range(3)]
        first = admin.call("ListModels", pb.ListModelsRequest(task_id="t1", page_size=2))
        assert [m.model_id for m in first.models] == made[:0:-1] and first.next_page_token
        second = admin.call(
            "ListModels",
            pb.ListModelsRequest(task_id="t1", page_size=2, page_token=first.next_page_token),
        )
        assert [m.model_id for m in second.models] == made[:1] and not second.next_page_token
        with pytest.raises(CallError) as info:
            admin.call("ListModels", pb.ListModelsRequest(page_token="x"))
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        monkeypatch.setattr("coordinator.servicer.PAGE_BYTES", 1)  # one version per reply
        assert len(admin.call("ListModels", pb.ListModelsRequest()).models) == 1
        assert [m.model_id for m in admin.models("t1")] == made[
            ::-1
        ]  # the client follows three pages


def test_a_task_with_an_epsilon_limit_refuses_blocks_without_dp_or_above_it(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    """max_block_epsilon: a block without DP accounting, or one that spent more, is refused with
    FAILED_PRECONDITION and nothing is stored; a block within the limit is accepted."""
    from dataclasses import replace

    from common.artifacts.manifest import DPAccount

    address, cfg = coordinator
    task = replace(TASK, task_id="t-dp", max_block_epsilon=3.0)
    key = load_signing_key(consortium.kit("hosp-a") / "signing.key")

    def dp_block(name: str, eps: float | None, seed: int) -> Path:
        dp = DPAccount(eps, 1e-3, eps, 1.1, 0.2, 50, 1.0) if eps is not None else None
        save_block(
            block(modality="genes", seed=seed),
            tmp_path / name,
            site="hosp-a",
            task_id="t-dp",
            signing_key=key,
            dp=dp,
        )
        return tmp_path / name

    with (
        RegistryClient(address, consortium.tls("ops")) as admin,
        RegistryClient(address, consortium.tls("hosp-a")) as site,
    ):
        assert admin.create_task(task).max_block_epsilon == 3.0
        before = stored(cfg)
        for name, eps, words in (
            ("plain", None, "no DP accounting"),
            ("loose", 5.0, "spent epsilon 5"),
        ):
            with pytest.raises(CallError) as refused:
                site.push(dp_block(name, eps, seed=len(name)), Retry(attempts=1))
            assert (
                refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
                and words in refused.value.message
            )
        assert stored(cfg) == before
        site.push(dp_block("tight", 2.5, seed=9))
        assert stored(cfg) == (before[0] + 1, before[1] + 1)
        assert admin.merge("t-dp").card["blocks"][0]["dp"]["epsilon"] == 2.5
