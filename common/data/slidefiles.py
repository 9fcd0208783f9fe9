"""Per-slide feature files of a bag modality: HDF5 (as CLAM and TRIDENT write them), safetensors
and .npy. A file holds one slide's instances as a 2-D array (instances x features; a leading axis
of 1 is dropped) in float16, bfloat16 (safetensors) or float32/float64. Only headers are read to
learn a slide's shape; rows are read when a batch needs them, and every row read is checked to
be finite. Pickle-based files (.pt, .pth, .pkl) are refused: loading them can run code."""

from __future__ import annotations

import json
import struct
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

SUFFIXES = (".h5", ".hdf5", ".safetensors", ".npy")
PICKLED = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
# What reading a damaged file raises: h5py raises RuntimeError, KeyError or OSError from HDF5;
# numpy parses a .npy header with ast and tokenize (SyntaxError, TokenError).
DAMAGED = (
    OSError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    EOFError,
    SyntaxError,
    tokenize.TokenError,
)
CONVERT = (
    "convert it without pickle, e.g. in Python: `import torch, h5py; h5py.File('x.h5', 'w')"
    "['features'] = torch.load('x.pt').float().numpy()` (or save it with safetensors / numpy.save)"
)
SAFETENSORS_DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),  # numpy has no bfloat16: read as 16-bit words, widened to float32
}
MAX_HEADER = 100 * 1024 * 1024  # a safetensors header above this is not a feature file
FULL_READ_SHARE = (
    1 / 16
)  # reading this share of a slide's rows or more: read it whole, then pick (bench/bag_bench.py)


@dataclass(frozen=True)
class SlideFile:
    """One slide: where its features are and their shape (from the file's header)."""

    slide_id: str
    path: str
    instances: int
    features: int
    dtype: str  # as stored: float16, bfloat16, float32, float64


def _fail(path: Path, problem: str, slide: str) -> DataError:
    return DataError(str(path), f"slide {slide!r}: {problem}")


def _shape2d(shape: tuple[int, ...], path: Path, slide: str) -> tuple[int, int]:
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise _fail(
            path,
            f"features must be a 2-D array (instances x features), got shape {tuple(shape)}",
            slide,
        )
    return int(shape[0]), int(shape[1])


def _float_dtype(dtype: np.dtype, path: Path, slide: str) -> str:
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise _fail(path, f"features must be float16, bfloat16 or float32, got {dtype}", slide)
    return str(dtype.newbyteorder("="))


def _safetensors_header(path: Path, dataset: str, slide: str) -> tuple[tuple[int, ...], str, int]:
    """(shape, safetensors dtype, byte offset of the data) of tensor ``dataset`` (or the only
    one)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise _fail(path, "not a safetensors file (too short)", slide)
        (size,) = struct.unpack("<Q", head)
        if size > MAX_HEADER:
            raise _fail(path, f"not a safetensors file (header of {size} bytes)", slide)
        raw = f.read(size)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _fail(path, "not a safetensors file (unreadable header)", slide) from None
    if not isinstance(header, dict):
        raise _fail(path, "not a safetensors file (header is not an object)", slide)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    name = dataset if dataset in tensors else (next(iter(tensors)) if len(tensors) == 1 else None)
    if name is None:
        raise _fail(
            path, f"no tensor {dataset!r} (has: {', '.join(sorted(tensors)) or 'none'})", slide
        )
    entry = tensors[name]
    try:
        shape = tuple(int(s) for s in entry["shape"])
        dtype = str(entry["dtype"])
        begin, end = (int(v) for v in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise _fail(path, f"tensor {name!r} has a malformed header entry", slide) from None
    if dtype not in SAFETENSORS_DTYPES:
        raise _fail(path, f"features must be F16, BF16 or F32, got {dtype}", slide)
    if (
        min(shape, default=0) < 0
        or end - begin != int(np.prod(shape)) * SAFETENSORS_DTYPES[dtype].itemsize
    ):
        raise _fail(
            path, f"tensor {name!r}: its byte range does not match its shape {shape}", slide
        )
    offset = 8 + size + begin
    if path.stat().st_size < offset + (end - begin):
        raise _fail(path, "the file is shorter than its header says (truncated?)", slide)
    return shape, dtype, offset


def probe(path: Path, slide: str, dataset: str = "features") -> SlideFile:
    """A slide's shape and dtype from its file's header (no feature values are read)."""
    suffix = path.suffix.lower()
    if suffix in PICKLED:
        raise _fail(
            path,
            f"{suffix} files are pickles and are refused (loading one can run code); {CONVERT}",
            slide,
        )
    if suffix not in SUFFIXES:
        raise _fail(
            path,
            f"unsupported feature file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}",
            slide,
        )
    if not path.is_file():
        raise _fail(path, "feature file not found", slide)
    if suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except DAMAGED as exc:
            raise _fail(
                path,
                f"not a readable .npy array ({(str(exc).splitlines() or [type(exc).__name__])[0]})",
                slide,
            ) from None
        n, f = _shape2d(arr.shape, path, slide)
        return SlideFile(slide, str(path), n, f, _float_dtype(arr.dtype, path, slide))
    if suffix == ".safetensors":
        shape, dtype, _ = _safetensors_header(path, dataset, slide)
        n, f = _shape2d(shape, path, slide)
        return SlideFile(
            slide,
            str(path),
            n,
            f,
            "bfloat16" if dtype == "BF16" else str(SAFETENSORS_DTYPES[dtype]),
        )
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
                raise _fail(
                    path,
                    f"no dataset {dataset!r} (has: {', '.join(sorted(h5.keys())) or 'none'})",
                    slide,
                )
            ds = h5[dataset]
            n, f = _shape2d(ds.shape, path, slide)
            return SlideFile(slide, str(path), n, f, _float_dtype(ds.dtype, path, slide))
    except DataError:
        raise
    except DAMAGED as exc:
        raise _fail(
            path,
            f"not a readable HDF5 file ({(str(exc).splitlines() or [type(exc).__name__])[0]})",
            slide,
        ) from None


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_rows(
    slide: SlideFile,
    rows: np.ndarray | None = None,
    dataset: str = "features",
    stored: bool = False,
) -> np.ndarray:
    """Rows of a slide (k, F): all of them, or the sorted, unique ``rows``; float32, or with
    ``stored`` float16 where the file holds float16. Raises :class:`DataError` naming the file and
    slide if the file changed or holds a non-finite value."""
    path = Path(slide.path)
    k = slide.instances if rows is None else len(rows)
    whole = rows is None or k >= FULL_READ_SHARE * slide.instances
    try:
        out = _read(path, slide, None if whole else rows, dataset)
    except DataError:
        raise
    except DAMAGED as exc:  # a file damaged since it was checked
        raise _fail(
            path,
            f"cannot be read ({(str(exc).splitlines() or [type(exc).__name__])[0]})",
            slide.slide_id,
        ) from None
    if out.shape != (slide.instances if whole else k, slide.features):
        raise _fail(
            path,
            f"changed since it was checked: shape {out.shape}, "
            f"expected ({slide.instances}, {slide.features})",
            slide.slide_id,
        )
    if whole and rows is not None:
        out = out[rows]
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        row = bad if rows is None else int(rows[bad])
        raise _fail(path, f"instance {row} holds a non-finite value", slide.slide_id)
    return out if stored and out.dtype == np.float16 else out.astype(np.float32, copy=False)


def _read(path: Path, slide: SlideFile, rows: np.ndarray | None, dataset: str) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        arr = arr.reshape(arr.shape[-2:]) if arr.ndim == 3 else arr
        return _narrow(np.asarray(arr if rows is None else arr[rows]))
    if suffix == ".safetensors":
        shape, dtype, offset = _safetensors_header(path, dataset, slide.slide_id)
        n, f = _shape2d(shape, path, slide.slide_id)
        arr = np.memmap(
            path, dtype=SAFETENSORS_DTYPES[dtype], mode="r", offset=offset, shape=(n, f)
        )
        part = np.asarray(arr if rows is None else arr[rows])
        return _bf16_to_f32(part) if dtype == "BF16" else _narrow(part)
    import h5py

    with h5py.File(path, "r") as h5:
        ds = h5[dataset]
        if ds.ndim == 3:
            part = ds[0] if rows is None else ds[0, rows]
        else:
            part = ds[()] if rows is None else ds[rows]
    return _narrow(np.asarray(part))


def _narrow(a: np.ndarray) -> np.ndarray:
    """float16 as it is, anything else as float32 (native byte order)."""
    return a.astype(np.float16 if a.dtype.itemsize == 2 else np.float32, copy=False)
