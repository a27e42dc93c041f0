"""Single ``.safetensors`` files: the header parsed here, one tensor read at a time, no torch."""

from __future__ import annotations

import math
import struct
import sys
from functools import partial
from typing import Iterator, Sequence

import numpy as np

from weightlint import dtypes
from weightlint.config import limits
from weightlint.record import TensorRecord
from weightlint.sources.base import (
    Item,
    Problem,
    Source,
    display_path,
    limit_problem,
    short_reason,
)

# safetensors dtype names → element types. Every one is read without torch (see weightlint.dtypes).
DTYPES = {
    "F64": dtypes.float64, "F32": dtypes.float32, "F16": dtypes.float16, "BF16": dtypes.bfloat16,
    **{code: dtypes.dtype(name) for code, name in (
        ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("I64", "int64"), ("I32", "int32"),
        ("I16", "int16"), ("I8", "int8"), ("U8", "uint8"), ("U16", "uint16"), ("U32", "uint32"),
        ("U64", "uint64"), ("BOOL", "bool"), ("C64", "complex64"))},
}


def read_header(path: str) -> tuple[dict, int]:
    """The header of a safetensors file and where its data starts; ValueError says what is wrong."""
    try:
        with open(path, "rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) < 8:
                raise ValueError("file is shorter than the 8-byte safetensors header length")
            (length,) = struct.unpack("<Q", raw_length)
            handle.seek(0, 2)
            size = handle.tell()
            if length > size - 8:
                raise ValueError(f"header length {length} exceeds the file size {size}")
            # Checked before a single header byte is read.
            limits.check("header_bytes", length, "header length")
            handle.seek(8)
            header = limits.load_json(handle.read(length), "header")
    except OSError as error:
        raise ValueError(f"cannot read: {error.strerror or error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"bad header: {short_reason(error)}") from None
    if not isinstance(header, dict):
        raise ValueError("bad header: not a JSON object")
    limits.check("tensors_per_file", len(header), "tensor count")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, finish = entry["data_offsets"]
            shape = entry.get("shape", [])
            if not (type(begin) is int and type(finish) is int and 0 <= begin <= finish):
                raise ValueError
            if not isinstance(shape, list) or not all(type(size) is int and size >= 0 for size in shape):
                raise ValueError
            limits.check("tensor_dims", len(shape), f"tensor {name!r}: dimension count")
            end = max(end, finish)
        except (KeyError, TypeError, ValueError, IndexError):
            raise ValueError(f"bad header entry for tensor {name!r}") from None
    if 8 + length + end > size:
        raise ValueError(f"truncated: tensors need {8 + length + end} bytes, the file has {size}")
    return header, 8 + length


def header_problem(path: str) -> str | None:
    """Why the file is not a readable safetensors file, or None."""
    try:
        read_header(path)
    except ValueError as error:
        return str(error)
    return None


def read_bytes_into(path: str, offset: int, target: np.ndarray) -> None:
    """Fill a uint8 array from the file at ``offset`` with plain reads (no memory map: a scan's
    resident memory then holds the tensors in flight, not every page of the file it touched)."""
    view = memoryview(target).cast("B")
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        done = 0
        while done < len(view):
            count = handle.readinto(view[done:])
            if not count:
                raise EOFError(f"unexpected end of file at byte {offset + done}")
            done += count


def load_tensor(path: str, offset: int, nbytes: int, dtype: dtypes.DType, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor as a NumPy array: floats as float32 (exact; float64 kept), others as stored."""
    buffer = np.empty(nbytes, dtype=np.uint8)
    if nbytes:
        read_bytes_into(path, offset, buffer)
    return dtypes.decode(buffer, dtype, shape)


def read_chunks(path: str, offset: int, nbytes: int, dtype: dtypes.DType, values: int) -> Iterator[np.ndarray]:
    """The tensor as float32 (float64 kept) chunks of at most ``values`` values, in order, read and
    decoded into two reused buffers: each chunk is valid until the next is asked for. A pass over
    a large tensor then allocates nothing and stays in the CPU's caches."""
    step = values * dtype.itemsize
    raw = np.empty(min(step, nbytes), dtype=np.uint8)
    decoded = np.empty(min(values, nbytes // dtype.itemsize), dtype=np.float32)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        for start in range(0, nbytes, step):
            chunk = raw[:min(step, nbytes - start)]
            view, done = memoryview(chunk), 0
            while done < chunk.size:
                count = handle.readinto(view[done:])
                if not count:
                    raise EOFError(f"unexpected end of file at byte {offset + start + done}")
                done += count
            yield dtypes.decode_into(chunk, dtype, decoded)


def read_ranges(path: str, offset: int, dtype: dtypes.DType, ranges: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
    """Values ``[start, start + count)`` of a tensor for each (start, count), in that order, as
    float32 (float64 kept): random access, through one open file, for a matrix's column panels."""
    with open(path, "rb", buffering=0) as handle:
        for start, count in ranges:
            raw = np.empty(count * dtype.itemsize, dtype=np.uint8)
            view, done = memoryview(raw), 0
            handle.seek(offset + start * dtype.itemsize)
            while done < raw.size:
                read = handle.readinto(view[done:])
                if not read:
                    raise EOFError(f"unexpected end of file at byte {offset + start * dtype.itemsize + done}")
                done += read
            yield dtypes.decode(raw, dtype, (count,))


class SafetensorsSource(Source):
    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="safetensors", files=[display_path(path)])
        self._real_path = str(path)

    def items(self) -> Iterator[Item]:
        yield from read_safetensors(self._real_path)


def _validate_with_library(path: str) -> str | None:
    """The safetensors library's own checks (overlaps, alignment …), without keeping it open."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy"):
            pass
    except Exception as error:  # safetensors raises its own error types
        return short_reason(error)
    return None


def read_safetensors(path: str, only: set[str] | None = None) -> Iterator[Item]:
    """Records for the tensors of one file (all, or the names in ``only``), in file order."""
    shown = display_path(path)
    try:
        header, data_start = read_header(path)
        problem = _validate_with_library(path)
    except ValueError as error:
        problem = str(error)
    except limits.LimitExceeded as error:
        yield limit_problem(shown, error)
        return
    if problem is not None:
        yield Problem("unreadable", shown, f"not a valid safetensors file: {problem}")
        return
    entries = sorted(((name, entry) for name, entry in header.items() if name != "__metadata__"),
                     key=lambda item: item[1]["data_offsets"][0])
    for name, entry in entries:
        if only is not None and name not in only:
            continue
        dtype = DTYPES.get(entry.get("dtype"))
        if dtype is None:
            yield Problem("unreadable", shown, f"tensor dtype {entry.get('dtype')} is not supported", tensor=name)
            continue
        shape = tuple(int(size) for size in entry.get("shape", ()))
        begin, end = (int(offset) for offset in entry["data_offsets"])
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            yield Problem("unreadable", shown, f"tensor data is {end - begin} bytes, its dtype and shape need "
                                               f"{expected}", tensor=name)
            continue
        readable_in_pieces = dtype.is_floating_point and dtype.itemsize <= 8 and sys.byteorder == "little"
        yield TensorRecord(
            name=name,
            shape=shape,
            dtype=dtype,
            file=shown,
            load=partial(load_tensor, path, data_start + begin, end - begin, dtype, shape),
            chunks=(partial(read_chunks, path, data_start + begin, end - begin, dtype) if readable_in_pieces else None),
            ranges=partial(read_ranges, path, data_start + begin, dtype) if readable_in_pieces else None,
            format="safetensors",
        )
