"""Block files: bit-identical round trip; tampering of any kind is detected."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from common.artifacts import IntegrityError, load_block, read_block_files, save_block, sha256_bytes
from common.artifacts.blockfile import MANIFEST, MANIFEST_VIEW, WEIGHTS
from common.serde import manifest_to_bytes
from tests.factories import bag, block, tabular


@pytest.mark.parametrize(("kind", "fourier"), [("tabular", "2d"), ("bag", "1d")])
def test_round_trip_is_bit_identical(tmp_path: Path, kind: str, fourier: str) -> None:
    src = block(kind=kind, in_features=4, fourier=fourier)
    manifest = save_block(src, tmp_path / "b", site="hospA", train_stats={"n_train": 100.0})
    loaded, m2 = load_block(tmp_path / "b")
    assert m2 == manifest and m2.site == "hospA" and m2.config == src.config
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    item = tabular(f=4) if kind == "tabular" else bag()
    assert torch.equal(loaded.eval()(item.x, item.mask), src.eval()(item.x, item.mask))
    first = (tmp_path / "b" / WEIGHTS).read_bytes()
    save_block(loaded, tmp_path / "c")
    assert (tmp_path / "c" / WEIGHTS).read_bytes() == first  # deterministic bytes


def test_manifest_records_what_the_issue_asks(tmp_path: Path) -> None:
    save_block(block(), tmp_path, site="hospa", task_id="t1")
    data = json.loads((tmp_path / MANIFEST_VIEW).read_text())
    assert (
        data["site"] == "hospa"
        and data["task_id"] == "t1"
        and data["weights_size"] == (tmp_path / WEIGHTS).stat().st_size
    )
    assert data["dtypes"]["latent"] == "F32" and data["tensors"]["scaling.mean"] == [5]
    assert (
        read_block_files(tmp_path).manifest.to_dict() == data
    )  # the view says what the protobuf says
    assert data["latent_shape"] == [6, 8] and data["fourier"] == "2d"
    assert data["config"]["modality"] == "a" and data["config"]["task"]["kind"] == "survival"
    assert data["code_version"] and data["weights_sha256"] == sha256_bytes(
        (tmp_path / WEIGHTS).read_bytes()
    )
    assert data["config"]["encoder"]["kind"] == "tabular"


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    save_block(block(), tmp_path)
    raw = bytearray((tmp_path / WEIGHTS).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (tmp_path / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="sha256"):
        load_block(tmp_path)


def rewrite(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace the weights and make the manifest's hash agree: only deeper checks can catch it."""
    data = st_save(state)
    (tmp_path / WEIGHTS).write_bytes(data)
    m = read_block_files(tmp_path).manifest
    (tmp_path / MANIFEST).write_bytes(
        manifest_to_bytes(replace(m, weights_sha256=sha256_bytes(data), weights_size=len(data)))
    )


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    b = block()
    save_block(b, tmp_path)
    state = {k: v.clone() for k, v in b.state_dict().items()}
    state["latent"][0, 0] = float("nan")
    rewrite(tmp_path, state)
    with pytest.raises(IntegrityError, match="'latent' contains NaN"):
        load_block(tmp_path)


def test_wrong_shape_and_missing_tensor_are_refused(tmp_path: Path) -> None:
    b = block()
    save_block(b, tmp_path)
    state = dict(b.state_dict())
    state["latent"] = torch.zeros(7, 8)
    rewrite(tmp_path, state)
    with pytest.raises(IntegrityError, match="'latent' has shape"):
        load_block(tmp_path)
    state.pop("latent")
    rewrite(tmp_path, state)
    with pytest.raises(IntegrityError, match=r"missing \['latent'\]"):
        load_block(tmp_path)


def test_lying_manifest_is_refused(tmp_path: Path) -> None:
    save_block(block(), tmp_path)
    m = read_block_files(tmp_path).manifest
    lying = replace(
        m, config=m.config.with_(latent_rows=9), tensors={**m.tensors, "latent": [9, 8]}
    )
    (tmp_path / MANIFEST).write_bytes(manifest_to_bytes(lying))
    with pytest.raises(IntegrityError):
        load_block(tmp_path)


def test_garbage_is_refused(tmp_path: Path) -> None:
    save_block(block(), tmp_path)
    (tmp_path / MANIFEST).write_bytes(b"\xff\xff not a protobuf")
    with pytest.raises(IntegrityError, match="manifest"):
        load_block(tmp_path)
    (tmp_path / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=r"weights\.safetensors"):
        load_block(tmp_path)


def test_no_pickle_in_the_weights(tmp_path: Path) -> None:
    save_block(block(), tmp_path)
    raw = (tmp_path / WEIGHTS).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    json.loads(raw[8 : 8 + header_len])  # a safetensors header is plain JSON
    assert b"\x80\x02" not in raw[:16]  # no pickle protocol marker at the start
