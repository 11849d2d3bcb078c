"""Check a GGUF file's structure before converting it: magic, version, a header that
ends inside the file, and every tensor's data inside the file.

transformers' GGUF reader (via `gguf.GGUFReader`) fails on a truncated or damaged file
with whatever numpy says (`cannot reshape array`, `index out of bounds`), after mapping
the whole file; this reads only the header, with bounds checked at every field, and says
which part is missing. Tensor sizes come from the `gguf` package's table of ggml types.
"""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

from ..errors import ModelRefError

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # v1 (32-bit counts) is what no current reader handles
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


class _Damaged(Exception):
    """Raised inside the parser; check_gguf turns it into one ModelRefError."""


class _Header:
    """Reads little- or big-endian header fields from a mapped file, each checked against
    the file size (a damaged count cannot make it read past the end)."""

    def __init__(self, data, size: int):
        self.data, self.size, self.pos, self.order = data, size, 0, "<"

    def bytes(self, n: int, what: str) -> bytes:
        at = self.pos
        if n < 0 or at + n > self.size:
            raise _Damaged(f"truncated: the header's {what} needs bytes {at}..{at + n} "
                           f"but the file has {self.size} bytes")
        self.pos = at + n
        return self.data[at:at + n]

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            self.bytes(n, what)  # raises, naming the field
        self.pos += n

    def scalar(self, fmt: str, what: str):
        return struct.unpack(self.order + fmt, self.bytes(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> bytes:
        return self.bytes(self.scalar("Q", f"{what} length"), what)

    def skip_value(self, vtype: int, what: str) -> None:
        if vtype in SCALARS:
            self.skip(struct.calcsize(SCALARS[vtype]), what)
        elif vtype == STRING:
            self.string(what)
        elif vtype == ARRAY:
            item, count = self.scalar("I", f"{what} item type"), self.scalar("Q", f"{what} length")
            if item in SCALARS:  # fixed-size items: one bounds check for the lot
                self.skip(count * struct.calcsize(SCALARS[item]), what)
            else:
                for _ in range(count):
                    self.skip_value(item, what)
        else:
            raise _Damaged(f"metadata {what} has unknown value type {vtype}")


def _tensor_bytes(name: str, dims: list, ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise _Damaged(f"tensor {name!r} has unknown ggml type {ggml_type}") from None
    count = 1
    for d in dims:
        count *= d
    if count % block:
        raise _Damaged(f"tensor {name!r} has {count} elements, not a multiple of its type's block of {block}")
    return count // block * type_size


def _parse(h: _Header) -> tuple:
    """(data section start, alignment, [(name, offset, n_bytes)]) of the file."""
    if h.bytes(4, "magic") != MAGIC:
        raise _Damaged("not a GGUF file (it does not start with the magic bytes 'GGUF')")
    raw_version = h.bytes(4, "version")
    version = struct.unpack("<I", raw_version)[0]
    if version & 0xFFFF == 0:  # a big-endian file reads as a huge little-endian number
        h.order, version = ">", struct.unpack(">I", raw_version)[0]
    if version not in VERSIONS:
        raise _Damaged(f"GGUF version {version}; this reader handles versions {', '.join(map(str, VERSIONS))}")
    n_tensors, n_kv = h.scalar("Q", "tensor count"), h.scalar("Q", "metadata count")
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_kv):
        key = h.string(f"metadata key {i}").decode("utf-8", "replace")
        vtype = h.scalar("I", f"type of {key!r}")
        if key == "general.alignment" and vtype == 4:
            alignment = h.scalar("I", key)
        else:
            h.skip_value(vtype, repr(key))
    if alignment <= 0 or alignment & (alignment - 1):
        raise _Damaged(f"general.alignment is {alignment}, not a power of two")
    tensors = []
    for i in range(n_tensors):
        name = h.string(f"tensor {i} name").decode("utf-8", "replace")
        n_dims = h.scalar("I", f"dimension count of {name!r}")
        if n_dims > MAX_DIMS:
            raise _Damaged(f"tensor {name!r} claims {n_dims} dimensions (at most {MAX_DIMS})")
        dims = [h.scalar("Q", f"shape of {name!r}") for _ in range(n_dims)]
        ggml_type, offset = h.scalar("I", f"type of {name!r}"), h.scalar("Q", f"offset of {name!r}")
        tensors.append((name, offset, _tensor_bytes(name, dims, ggml_type)))
    end = h.pos
    return end + (-end % alignment), alignment, tensors


def check_gguf(path: Path, ref: str = "") -> int:
    """Raise ModelRefError if `path` is not a whole GGUF file; return its tensor count."""
    path = Path(path)
    where = f"GGUF file {str(path)!r}" + (f" (from {ref!r})" if ref and ref != f"gguf:{path}" else "")
    fix = "copy or download the file again"
    size = path.stat().st_size
    try:
        if size == 0:
            raise _Damaged("the file is empty (0 bytes)")
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start, _, tensors = _parse(_Header(data, size))
        for name, offset, n_bytes in tensors:
            if start + offset + n_bytes > size:
                raise _Damaged(f"truncated: tensor {name!r} lies at bytes {start + offset}..{start + offset + n_bytes}"
                               f" but the file has {size} bytes")
    except _Damaged as exc:
        if str(exc).startswith("not a GGUF file"):
            fix = "give the path of a .gguf model file"
        raise ModelRefError(f"cannot read {where}: {exc}; {fix}") from None
    return len(tensors)
