"""Checking a safetensors file while its bytes arrive, so that a coordinator never has to read a
block twice: the header against the manifest, the tensors' byte ranges (contiguous, exactly
covering the file, of the right length) and every floating value finite."""

from __future__ import annotations

import json
import math
import struct

import numpy as np

from .blockfile import IntegrityError, check_against
from .manifest import BlockManifest

ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
FLOATS = {"F64": np.float64, "F32": np.float32, "F16": np.float16}
HEADER_MAX = 100 << 20


class StreamCheck:
    def __init__(self, manifest: BlockManifest) -> None:
        self.manifest = manifest
        self.total = manifest.weights_size
        self.pos = 0  # bytes consumed
        self.head = bytearray()
        # (start, end, dtype, name), absolute offsets
        self.ranges: list[tuple[int, int, str, str]] | None = None
        self.current = 0  # index into ranges
        self.carry = b""  # bytes of an element split across two feeds

    def _parse_header(self) -> None:
        (n,) = struct.unpack("<Q", bytes(self.head[:8]))
        if n > HEADER_MAX or 8 + n > self.total:
            raise IntegrityError(
                f"weights are not a valid safetensors file: header length {n} is implausible"
            )
        if len(self.head) < 8 + n:
            return
        try:
            raw = json.loads(bytes(self.head[8 : 8 + n]))
            entries = {k: v for k, v in raw.items() if k != "__metadata__"}
            found = {k: (list(v["shape"]), str(v["dtype"])) for k, v in entries.items()}
            spans = sorted(
                (int(v["data_offsets"][0]), int(v["data_offsets"][1]), str(v["dtype"]), k)
                for k, v in entries.items()
            )
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise IntegrityError(
                f"weights are not a valid safetensors file: bad header ({exc})"
            ) from None
        check_against(found, self.manifest)
        base, expect = 8 + n, 0
        ranges = []
        for start, end, dtype, name in spans:
            if dtype not in ITEMSIZE:
                raise IntegrityError(f"tensor {name!r} has unsupported dtype {dtype}")
            if start != expect or end - start != math.prod(found[name][0]) * ITEMSIZE[dtype]:
                raise IntegrityError(
                    f"tensor {name!r}: its bytes [{start}, {end}) do not follow the previous "
                    "tensor or do not match its shape"
                )
            ranges.append((base + start, base + end, dtype, name))
            expect = end
        if base + expect != self.total:
            raise IntegrityError(
                f"the tensors cover {base + expect} bytes, the file has {self.total}"
            )
        self.ranges = ranges
        rest = bytes(self.head[8 + n :])
        self.pos = 8 + n
        self.head = bytearray()
        if rest:
            self._data(rest)

    def feed(self, data: bytes) -> None:
        """The next bytes of the file; raises :class:`IntegrityError` at the first problem."""
        if self.ranges is None:
            self.head += data
            if len(self.head) >= 8:
                self._parse_header()
            return
        self._data(data)

    def _data(self, data: bytes) -> None:
        assert self.ranges is not None
        view = memoryview(data)
        while view.nbytes:
            if self.current >= len(self.ranges):
                raise IntegrityError("weights have bytes after the last tensor")
            _, end, dtype, name = self.ranges[self.current]
            take = min(view.nbytes, end - self.pos)
            part, view = view[:take], view[take:]
            self.pos += take
            if dtype in FLOATS or dtype == "BF16":
                size = ITEMSIZE[dtype]
                buf = self.carry + bytes(part) if self.carry else part
                whole = (len(buf) // size) * size
                self._finite(buf[:whole], dtype, name)
                self.carry = bytes(buf[whole:])
            if self.pos == end:
                self.current += 1
                self.carry = b""

    @staticmethod
    def _finite(buf: bytes | memoryview, dtype: str, name: str) -> None:
        if not len(buf):
            return
        if dtype == "BF16":
            bits = np.frombuffer(buf, dtype=np.uint16)
            ok = not np.any((bits & 0x7F80) == 0x7F80)
        else:
            ok = bool(np.isfinite(np.frombuffer(buf, dtype=FLOATS[dtype])).all())
        if not ok:
            raise IntegrityError(f"tensor {name!r} contains NaN or infinity")

    def finish(self) -> None:
        if self.ranges is None:
            raise IntegrityError("weights are not a valid safetensors file: incomplete header")
        if self.pos != self.total or self.current != len(self.ranges):
            raise IntegrityError(f"weights end after {self.pos} of {self.total} bytes")
