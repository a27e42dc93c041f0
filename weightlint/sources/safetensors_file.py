"""Single ``.safetensors`` files: memory-mapped, one tensor loaded at a time."""

from __future__ import annotations

import json
import struct
from typing import Iterator

import torch

from weightlint.record import TensorRecord
from weightlint.sources.base import Item, Problem, Source, display_path, short_reason

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("U16", "uint16"),
                     ("U32", "uint32"), ("U64", "uint64"), ("C64", "complex64")):
    if hasattr(torch, _attr):
        DTYPES[_name] = getattr(torch, _attr)


def header_problem(path: str) -> str | None:
    """Check the header by hand so that a corrupt file gets a precise reason."""
    try:
        with open(path, "rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) < 8:
                return "file is shorter than the 8-byte safetensors header length"
            (length,) = struct.unpack("<Q", raw_length)
            handle.seek(0, 2)
            size = handle.tell()
            if length > size - 8:
                return f"header length {length} exceeds the file size {size}"
            handle.seek(8)
            header = json.loads(handle.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return f"bad header: {short_reason(error)}"
    if not isinstance(header, dict):
        return "bad header: not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            return f"bad header entry for tensor {name!r}"
    if 8 + length + end > size:
        return f"truncated: tensors need {8 + length + end} bytes, the file has {size}"
    return None


class SafetensorsSource(Source):
    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="safetensors", files=[display_path(path)])
        self._real_path = str(path)

    def items(self) -> Iterator[Item]:
        yield from read_safetensors(self._real_path)


def read_safetensors(path: str, only: set[str] | None = None) -> Iterator[Item]:
    """Records for the tensors of one file (all, or the names in ``only``)."""
    from safetensors import safe_open

    shown = display_path(path)
    problem = header_problem(path)
    if problem is None:
        try:
            handle = safe_open(path, framework="pt")
        except Exception as error:  # safetensors raises its own error types
            problem = short_reason(error)
    if problem is not None:
        yield Problem("unreadable", shown, f"not a valid safetensors file: {problem}")
        return
    for name in handle.keys():
        if only is not None and name not in only:
            continue
        tensor_slice = handle.get_slice(name)
        dtype_name = tensor_slice.get_dtype()
        dtype = DTYPES.get(dtype_name)
        if dtype is None:
            yield Problem("unreadable", shown, f"tensor dtype {dtype_name} is not supported", tensor=name)
            continue
        yield TensorRecord(
            name=name,
            shape=tuple(tensor_slice.get_shape()),
            dtype=dtype,
            file=shown,
            load=lambda name=name: handle.get_tensor(name),
            format="safetensors",
        )
