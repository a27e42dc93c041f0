"""GGUF files (llama.cpp): the header parsed by the ``gguf`` package, one tensor read at a time.

The package's ``GGUFReader`` memory-maps the file to parse the header; tensor data is then read
with plain file reads (offset and size from the reader), so that resident memory holds only the
tensor in flight. Float tensors (F32, F16, BF16, F64) are read as they are stored; quantized
tensors (Q4_0, Q8_0, K-quants, I-quants …) are dequantized to float32 inside ``load()``, so the
numeric rules judge the values llama.cpp will compute with. GGUF lists dimensions innermost first (``ne[0]`` is the row
length); records carry the PyTorch order, ``(out, in)`` for a weight matrix.

A tensor type the installed ``gguf`` cannot dequantize is a ``Problem("unsupported-tensor")``
(WL007, info), never a crash. A file the reader rejects is WL001; for a truncated file a small
header walk (below) says precisely what is missing.
"""

from __future__ import annotations

import os
import struct
import sys
import warnings
from collections import Counter
from functools import partial
from typing import Any, Iterator

import numpy as np

from weightlint import dtypes
from weightlint.config import limits
from weightlint.record import TensorRecord
from weightlint.sources.safetensors_file import read_chunks, read_ranges
from weightlint.sources.base import (
    Item,
    Problem,
    Source,
    display_path,
    limit_problem,
    short_reason,
)

INSTALL_HINT = "pip install gguf"  # a dependency of weightlint; missing only in a broken environment
# Types read without conversion: GGML type name → the dtype the record (and load()) has.
DIRECT_FLOATS = {"F32": dtypes.float32, "F16": dtypes.float16, "F64": dtypes.float64, "BF16": dtypes.bfloat16}
DIRECT_INTEGERS = {"I8": dtypes.dtype("int8"), "I16": dtypes.dtype("int16"), "I32": dtypes.dtype("int32"),
                   "I64": dtypes.dtype("int64")}
# Metadata keys kept in the source description: scalars only (tokenizer arrays can hold 100k+ entries).
_SKIPPED_PREFIXES = ("GGUF.", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                     "tokenizer.ggml.merges", "tokenizer.chat_template")
_supported: dict[Any, bool] = {}


class GGUFSource(Source):
    """One ``.gguf`` file. ``describe()`` adds the GGUF header once ``items()`` has read it."""

    def __init__(self, path: str) -> None:
        super().__init__(path=display_path(path), format="gguf", files=[display_path(path)])
        self._real_path = str(path)
        self.header: dict[str, Any] | None = None

    def describe(self) -> dict:
        described = super().describe()
        if self.header is not None:
            described["gguf"] = self.header
        return described

    def items(self) -> Iterator[Item]:
        shown = self.files[0]
        try:
            import gguf
        except ImportError:
            yield Problem("unreadable", shown, f"GGUF files need the gguf package: {INSTALL_HINT}")
            return
        try:
            # Counts and lengths are checked against the limits and the file size first: the
            # reader would allocate what a 53-byte file declares (an array of 2^62 items).
            with open(self._real_path, "rb") as handle:
                _walk_header(_Cursor(handle, os.fstat(handle.fileno()).st_size))
        except limits.LimitExceeded as error:
            yield limit_problem(shown, error)
            return
        except _Truncated:
            yield Problem("unreadable", shown, "not a valid GGUF file: " + diagnose(self._real_path, EOFError()))
            return
        except ValueError as error:
            yield Problem("unreadable", shown, f"not a valid GGUF file: {error}")
            return
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # A hostile header overflows the reader's offset arithmetic: the resulting error is
                # reported below, the NumPy warnings on the way are noise.
                warnings.simplefilter("ignore", RuntimeWarning)
                reader = gguf.GGUFReader(self._real_path)
        except Exception as error:  # the reader raises ValueError, IndexError, KeyError … on bad bytes
            yield Problem("unreadable", shown, f"not a valid GGUF file: {diagnose(self._real_path, error)}")
            return
        self.header = read_header(reader)
        types: dict[str, str] = {}
        dequantized: Counter[str] = Counter()
        little_endian = (reader.byte_order == "I") == (sys.byteorder == "little")  # "I": same as this host
        byte_order = "<" if little_endian else ">"
        for tensor in reader.tensors:
            item = _item(tensor, self._real_path, shown, self.header, byte_order)
            types[tensor.name] = tensor.tensor_type.name
            if isinstance(item, TensorRecord) and item.metadata.get("quantized"):
                dequantized[tensor.tensor_type.name] += 1
            yield item
        self.header["type_counts"] = dict(sorted(Counter(types.values()).items()))
        self.header["tensor_types"] = types
        if dequantized:
            counts = ", ".join(f"{kind} ×{count}" for kind, count in sorted(dequantized.items()))
            self.notes.append(f"{shown}: {sum(dequantized.values())} quantized tensors ({counts}) were dequantized "
                              "to float32; the numeric rules judge the dequantized values")


def _item(tensor: Any, path: str, shown: str, header: dict[str, Any], byte_order: str) -> Item:
    kind = tensor.tensor_type.name
    # GGUF dims are innermost first; numpy (and PyTorch) order is the reverse.
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    metadata = {"gguf_type": kind}
    if header.get("architecture"):
        metadata["gguf_architecture"] = header["architecture"]
    where = (path, int(tensor.data_offset), int(tensor.n_bytes))
    if kind in DIRECT_FLOATS or kind in DIRECT_INTEGERS:
        dtype = DIRECT_FLOATS.get(kind) or DIRECT_INTEGERS[kind]
        in_pieces = kind in DIRECT_FLOATS and byte_order == "<"
        return TensorRecord(name=tensor.name, shape=shape, dtype=dtype, file=shown,
                            load=partial(_read_direct, where, dtype, shape, byte_order),
                            chunks=partial(read_chunks, *where, dtype) if in_pieces else None,
                            ranges=partial(read_ranges, where[0], where[1], dtype) if in_pieces else None,
                            format="gguf", metadata=metadata)
    if byte_order != "<" or not can_dequantize(tensor.tensor_type):
        return Problem("unsupported-tensor", shown,
                       f"{kind} tensors cannot be dequantized by the installed gguf package; values not checked"
                       if byte_order == "<" else f"{kind} tensor of a big-endian GGUF file; values not checked",
                       tensor=tensor.name, detail={"gguf_type": kind, "shape": list(shape)})
    metadata["quantized"] = True
    return TensorRecord(name=tensor.name, shape=shape, dtype=dtypes.float32, file=shown,
                        load=partial(_dequantize, where, tensor.tensor_type, shape),
                        chunks=partial(_dequantized_chunks, where, tensor.tensor_type, shape),
                        format="gguf", metadata=metadata)


def read_bytes(path: str, offset: int, nbytes: int) -> np.ndarray:
    """The bytes of one tensor, with plain reads: resident memory holds the tensor in flight only,
    not every page of the memory map that it touched (the reader's map serves the header)."""
    buffer = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        done = 0
        while done < nbytes:
            count = handle.readinto(view[done:])
            if not count:
                raise EOFError(f"unexpected end of file at byte {offset + done}")
            done += count
    return buffer


def _read_direct(where: tuple[str, int, int], dtype: dtypes.DType, shape: tuple[int, ...], byte_order: str) -> np.ndarray:
    # Floats widen exactly to float32 (BF16 from its raw 16 bits, never rounded through another type).
    return dtypes.decode(read_bytes(*where), dtype, shape, byte_order)


def _dequantize(where: tuple[str, int, int], quant_type: Any, shape: tuple[int, ...]) -> np.ndarray:
    from gguf.quants import dequantize, quant_shape_to_byte_shape

    raw = read_bytes(*where).reshape(quant_shape_to_byte_shape(shape, quant_type))
    values = dequantize(raw, quant_type)
    return np.ascontiguousarray(values, dtype=np.float32).reshape(shape)


def _dequantized_chunks(where: tuple[str, int, int], quant_type: Any, shape: tuple[int, ...],
                        values: int) -> Iterator[np.ndarray]:
    """The dequantized tensor in chunks of whole rows (quantization blocks run along a row), at most
    ``values`` values each (at least one row)."""
    from gguf.quants import dequantize, quant_shape_to_byte_shape

    path, offset, nbytes = where
    columns = shape[-1] if shape else 1
    row_bytes = quant_shape_to_byte_shape((1, columns), quant_type)[-1]
    rows = nbytes // row_bytes
    step = max(1, values // max(columns, 1))
    for start in range(0, rows, step):
        count = min(step, rows - start)
        raw = read_bytes(path, offset + start * row_bytes, count * row_bytes).reshape(count, row_bytes)
        yield np.ascontiguousarray(dequantize(raw, quant_type), dtype=np.float32).reshape(-1)


def can_dequantize(quant_type: Any) -> bool:
    """Whether the installed ``gguf`` dequantizes this type: asked once per type, on one zero block."""
    if quant_type not in _supported:
        try:
            from gguf.constants import GGML_QUANT_SIZES
            from gguf.quants import dequantize  # gguf >= 0.10

            _, type_size = GGML_QUANT_SIZES[quant_type]
            dequantize(np.zeros((1, type_size), dtype=np.uint8), quant_type)
            _supported[quant_type] = True
        except Exception:  # NotImplementedError, an unknown type, a gguf without dequantize
            _supported[quant_type] = False
    return _supported[quant_type]


def field_value(field: Any) -> Any:
    """A scalar metadata field's value (str, int, float, bool); None for arrays."""
    from gguf.constants import GGUFValueType

    if not field.types or field.types[0] == GGUFValueType.ARRAY or not field.data:
        return None
    part = field.parts[field.data[0]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    value = part.tolist()[0]
    return bool(value) if field.types[0] == GGUFValueType.BOOL else value


def read_header(reader: Any) -> dict[str, Any]:
    """What the JSON report shows about a GGUF file: architecture, name, file type, scalar metadata."""
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith(_SKIPPED_PREFIXES):
            continue
        value = field_value(field)
        if value is not None:
            metadata[key] = value
    file_type = metadata.get("general.file_type")
    header: dict[str, Any] = {
        "version": field_value(reader.fields["GGUF.version"]) if "GGUF.version" in reader.fields else None,
        "architecture": metadata.get("general.architecture"),
        "name": metadata.get("general.name"),
        "file_type": _file_type_name(file_type),
        "tensor_count": len(reader.tensors),
        "metadata": metadata,
    }
    return header


def _file_type_name(file_type: Any) -> str | None:
    if file_type is None:
        return None
    try:
        from gguf.constants import LlamaFileType

        return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except Exception:  # a file type newer than the installed gguf package
        return str(file_type)


# -- why a file is not readable: a small header walk, used only after the reader failed -----------

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_SMALLEST_ITEM = {_STRING: 8, _ARRAY: 12}  # bytes an item of a non-scalar array takes at least
_MAX_ARRAY_NESTING = 4


class _Truncated(Exception):
    pass


class _Cursor:
    def __init__(self, handle: Any, size: int) -> None:
        self.handle, self.size = handle, size

    def read(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) < count:
            raise _Truncated
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def skip(self, count: int) -> None:
        if self.handle.tell() + count > self.size:
            raise _Truncated
        self.handle.seek(count, os.SEEK_CUR)

    def string(self) -> bytes:
        length = self.unpack("<Q")
        if self.handle.tell() + length > self.size:
            raise _Truncated
        return self.read(length)

    def skip_value(self, value_type: int, depth: int = 0) -> None:
        if value_type == _STRING:
            self.skip(self.unpack("<Q"))
        elif value_type == _ARRAY:
            item_type, count = self.unpack("<I"), self.unpack("<Q")
            limits.check("metadata_items", count, "metadata array length")
            if item_type in _SCALAR_SIZES:
                self.skip(_SCALAR_SIZES[item_type] * count)
            elif depth >= _MAX_ARRAY_NESTING:
                raise ValueError(f"metadata arrays nested more than {_MAX_ARRAY_NESTING} deep")
            else:
                if self.handle.tell() + count * _SMALLEST_ITEM.get(item_type, 1) > self.size:
                    raise _Truncated
                for _ in range(count):
                    self.skip_value(item_type, depth + 1)
        elif value_type in _SCALAR_SIZES:
            self.skip(_SCALAR_SIZES[value_type])
        else:
            raise ValueError(f"unknown metadata value type {value_type}")


def diagnose(path: str, error: BaseException) -> str:
    """One line saying why the reader failed; precise for the common case, a truncated download."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return short_reason(error)
    if size == 0:
        return "the file is empty"
    if "GGMLQuantizationType" in str(error):  # a type newer than the installed package: the file may be fine
        return f"a tensor type unknown to the installed gguf package ({short_reason(error)}); try pip install -U gguf"
    try:
        with open(path, "rb") as handle:
            cut = _find_truncation(_Cursor(handle, size))
    except _Truncated:
        return f"truncated: the header runs past the end of the file ({size} bytes)"
    except Exception:  # a corrupt header: the reader's own words
        cut = None
    return cut or short_reason(error)


def _walk_header(cursor: _Cursor) -> tuple[list[tuple[str, list[int], int, int]], int]:
    """(tensor infos, data start) from a walk of the header that allocates nothing the file does
    not hold: every count is checked against the limits and the bytes left before it is used.
    Raises ValueError for a malformed header, _Truncated, or LimitExceeded."""
    if cursor.read(4) != b"GGUF":
        raise ValueError("no GGUF magic number at the start of the file")
    version = cursor.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported")
    tensor_count, kv_count = cursor.unpack("<Q"), cursor.unpack("<Q")
    limits.check("tensors_per_file", tensor_count, "tensor count")
    limits.check("metadata_items", kv_count, "metadata key count")
    alignment = 32
    for _ in range(kv_count):
        key = cursor.string()
        value_type = cursor.unpack("<I")
        if key == b"general.alignment" and value_type == 4:
            alignment = cursor.unpack("<I") or 32
        else:
            cursor.skip_value(value_type)
    infos = []
    for _ in range(tensor_count):
        name = cursor.string().decode("utf-8", errors="replace")
        ndim = cursor.unpack("<I")
        limits.check("tensor_dims", ndim, f"tensor {name!r}: dimension count")
        dims = [cursor.unpack("<Q") for _ in range(ndim)]
        infos.append((name, dims, cursor.unpack("<I"), cursor.unpack("<Q")))
    return infos, -(-cursor.handle.tell() // alignment) * alignment


def _find_truncation(cursor: _Cursor) -> str | None:
    try:
        infos, start = _walk_header(cursor)
    except ValueError as error:
        return str(error)
    cut = [name for name, dims, kind, offset in infos if start + offset + _nbytes(dims, kind) > cursor.size]
    if not cut:
        return None
    end = max(start + offset + _nbytes(dims, kind) for _, dims, kind, offset in infos)
    return (f"truncated: the file is {cursor.size} bytes but its tensor data runs to byte {end} "
            f"({len(cut)} of {len(infos)} tensors cut off, first {cut[0]!r})")


def _nbytes(dims: list[int], kind: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    count = 1
    for dim in dims:
        count *= dim
    return count * type_size // block_size
