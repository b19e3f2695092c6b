"""safetensors files handled at the byte level, so that a multi-GB base checkpoint never enters memory.

A safetensors file is ``u64 header length | JSON header | data``; the header maps each tensor name to its
dtype, shape and ``data_offsets`` *relative to the data section*. Renaming tensors therefore only rewrites
the header, and the data section is copied as it is, in fixed-size chunks (``shutil.copyfileobj``): the
weights are copied bit for bit and the process holds one chunk at a time. The ``safetensors`` library offers
no rename, and reading tensors through it (mmap) would bring every page of the shard into this process.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

CHUNK = 16 << 20  # bytes per copy step
MAX_HEADER = 100 << 20  # the format's own limit on the JSON header

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


class SafetensorsFileError(ValueError):
    """A file that is not a readable safetensors file."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors' name: "BF16", "F32", ...
    shape: tuple[int, ...]
    begin: int  # offsets into the data section
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str], int]:
    """(tensors by name, __metadata__, absolute offset of the data section)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER:
                raise SafetensorsFileError(f"{path}: header of {length} bytes, not a safetensors file")
            raw = json.loads(f.read(length))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SafetensorsFileError(f"{path}: not a readable safetensors file ({exc})") from exc
    metadata = raw.pop("__metadata__", None) or {}
    tensors = {
        name: TensorEntry(name, v["dtype"], tuple(v["shape"]), *v["data_offsets"]) for name, v in raw.items()
    }
    return tensors, metadata, 8 + length


def _header_bytes(entries: dict[str, dict], metadata: dict[str, str]) -> bytes:
    blob = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format allows trailing spaces; 8-byte aligned data
    return struct.pack("<Q", len(blob)) + blob


def write_renamed(src: Path, dst: Path, rename: Callable[[str], str]) -> dict[str, TensorEntry]:
    """Copy ``src`` to ``dst`` with every tensor renamed; the data section is copied byte for byte."""
    tensors, metadata, start = read_header(src)
    entries = {
        rename(t.name): {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [t.begin, t.end]}
        for t in tensors.values()
    }
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(_header_bytes(entries, {**metadata, "format": "pt"}))
        fin.seek(start)
        shutil.copyfileobj(fin, fout, CHUNK)
    return {rename(n): TensorEntry(rename(n), t.dtype, t.shape, t.begin, t.end) for n, t in tensors.items()}


def write_tensor_copy(src: Path, name: str, dst: Path, new_name: str) -> TensorEntry:
    """A one-tensor file ``dst`` holding ``src``'s tensor ``name`` as ``new_name`` (bytes copied in chunks)."""
    tensors, _, start = read_header(src)
    t = tensors[name]
    size = t.end - t.begin
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(_header_bytes(
            {new_name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [0, size]}}, {"format": "pt"}
        ))
        fin.seek(start + t.begin)
        for chunk in _read_chunks(fin, size):
            fout.write(chunk)
    return TensorEntry(new_name, t.dtype, t.shape, 0, size)


def _read_chunks(f, size: int) -> Iterator[bytes]:
    left = size
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise SafetensorsFileError(f"{f.name}: truncated ({left} bytes missing)")
        left -= len(chunk)
        yield chunk


def row_mean(src: Path, name: str) -> torch.Tensor:
    """The mean over dim 0 of a 2-D tensor, in float64, reading a chunk of rows at a time."""
    tensors, _, start = read_header(src)
    t = tensors[name]
    rows, cols = t.shape
    row_bytes = (t.end - t.begin) // rows
    per_chunk = max(1, CHUNK // row_bytes)
    total = torch.zeros(cols, dtype=torch.float64)
    with open(src, "rb") as f:
        f.seek(start + t.begin)
        for first in range(0, rows, per_chunk):
            n = min(per_chunk, rows - first)
            buf = bytearray(f.read(n * row_bytes))
            if len(buf) != n * row_bytes:
                raise SafetensorsFileError(f"{src}: {name} is truncated")
            total += torch.frombuffer(buf, dtype=t.torch_dtype).view(n, cols).double().sum(0)
    return total / rows
