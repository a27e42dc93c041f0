"""Element types without PyTorch: what a record stores, and exact conversion of stored bytes to
float32 with NumPy alone.

A scan of safetensors, GGUF or ONNX files never imports torch (importing it takes longer than
checking a small model): the sources read bytes, and this module turns them into NumPy arrays.
float16, bfloat16 and the 8-bit float formats all widen to float32 exactly; float64 stays float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    """An element type, named as PyTorch names it (``bfloat16``, ``float8_e4m3fn``, ``int64``)."""

    name: str
    itemsize: int
    kind: str  # "f" floating, "c" complex, "i" signed integer, "u" unsigned integer, "b" bool

    @property
    def is_floating_point(self) -> bool:
        return self.kind == "f"

    @property
    def is_complex(self) -> bool:
        return self.kind == "c"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"DType({self.name})"

    def __eq__(self, other: Any) -> bool:
        # Equal to another DType of the same name, to the name itself, and to the torch.dtype of
        # that name (``record.dtype == torch.float16``) without importing torch here.
        if isinstance(other, DType):
            return other.name == self.name
        if isinstance(other, str):
            return other.removeprefix("torch.") == self.name
        if type(other).__module__ == "torch" and type(other).__name__ == "dtype":
            return str(other).removeprefix("torch.") == self.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)


_ALL = [
    DType("float64", 8, "f"), DType("float32", 4, "f"), DType("float16", 2, "f"), DType("bfloat16", 2, "f"),
    DType("float8_e4m3fn", 1, "f"), DType("float8_e4m3fnuz", 1, "f"), DType("float8_e5m2", 1, "f"),
    DType("float8_e5m2fnuz", 1, "f"), DType("float8_e8m0fnu", 1, "f"),
    DType("complex64", 8, "c"), DType("complex128", 16, "c"),
    DType("int64", 8, "i"), DType("int32", 4, "i"), DType("int16", 2, "i"), DType("int8", 1, "i"),
    DType("uint64", 8, "u"), DType("uint32", 4, "u"), DType("uint16", 2, "u"), DType("uint8", 1, "u"),
    DType("bool", 1, "b"),
]
BY_NAME = {dtype.name: dtype for dtype in _ALL}
float64, float32, float16, bfloat16 = (BY_NAME[n] for n in ("float64", "float32", "float16", "bfloat16"))

# Types NumPy holds natively: the stored bytes are viewed as these.
_NATIVE = {"float64": "f8", "float32": "f4", "float16": "f2", "complex64": "c8", "complex128": "c16",
           "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1",
           "uint64": "u8", "uint32": "u4", "uint16": "u2", "uint8": "u1", "bool": "?"}


def dtype(name: str) -> DType:
    """The DType called ``name`` (``"bfloat16"``, ``"torch.float16"``); KeyError if unknown."""
    return BY_NAME[name.removeprefix("torch.")]


def from_torch(torch_dtype: Any) -> DType:
    """The DType of a ``torch.dtype`` (any, including ones this table does not list)."""
    name = str(torch_dtype).removeprefix("torch.")
    if name in BY_NAME:
        return BY_NAME[name]
    kind = "c" if torch_dtype.is_complex else "f" if torch_dtype.is_floating_point else (
        "b" if name == "bool" else "u" if name.startswith("uint") else "i")
    return DType(name, torch_dtype.itemsize, kind)


def _float8_value(code: int, exponent_bits: int, bias: int, style: str) -> float:
    """The value of one 8-bit float code. ``style``: "fn" (no Inf, S.1111.111 is NaN), "ieee"
    (Inf and NaN at the top exponent), "fnuz" (no Inf, no −0, 0x80 is NaN), "e8m0" (2^(code−127))."""
    if style == "e8m0":
        return float("nan") if code == 0xFF else 2.0 ** (code - 127)
    mantissa_bits = 7 - exponent_bits
    sign = -1.0 if code & 0x80 else 1.0
    exponent = (code >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = code & ((1 << mantissa_bits) - 1)
    top = (1 << exponent_bits) - 1
    if style == "fnuz" and code == 0x80:
        return float("nan")
    if style == "fn" and exponent == top and mantissa == (1 << mantissa_bits) - 1:
        return float("nan")
    if style == "ieee" and exponent == top:
        return sign * float("inf") if mantissa == 0 else float("nan")
    if exponent == 0:
        return sign * (mantissa / (1 << mantissa_bits)) * 2.0 ** (1 - bias)
    return sign * (1 + mantissa / (1 << mantissa_bits)) * 2.0 ** (exponent - bias)


_FLOAT8 = {"float8_e4m3fn": (4, 7, "fn"), "float8_e4m3fnuz": (4, 8, "fnuz"), "float8_e5m2": (5, 15, "ieee"),
           "float8_e5m2fnuz": (5, 16, "fnuz"), "float8_e8m0fnu": (8, 127, "e8m0")}


@lru_cache(maxsize=None)
def float8_table(name: str) -> np.ndarray:
    """float32 value of each of the 256 codes of an 8-bit float format."""
    exponent_bits, bias, style = _FLOAT8[name]
    return np.array([_float8_value(code, exponent_bits, bias, style) for code in range(256)], dtype=np.float32)


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Exact: a bfloat16 is the top half of the float32 with the same bits."""
    wide = bits.view(np.uint16).astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


def decode(raw: np.ndarray, stored: DType, shape: tuple[int, ...], byte_order: str = "<") -> np.ndarray:
    """Stored bytes (a uint8 array) → a NumPy array of ``shape``: floats as float32 (float64 kept),
    other types as themselves."""
    name = stored.name
    if name == "bfloat16":
        values = bfloat16_to_float32(raw.view(np.dtype(byte_order + "u2")).astype("=u2", copy=False))
    elif name in _FLOAT8:
        values = float8_table(name)[raw]
    elif name in _NATIVE:
        values = raw.view(np.dtype(byte_order + _NATIVE[name]) if _NATIVE[name] != "?" else np.bool_)
        values = values.astype(values.dtype.newbyteorder("="), copy=False)
        if name == "float16":
            values = values.astype(np.float32)
    else:
        raise ValueError(f"cannot decode {name} without PyTorch")
    return values.reshape(shape)


def decode_into(raw: np.ndarray, stored: DType, out: np.ndarray) -> np.ndarray:
    """Little-endian stored floats (a uint8 array) as float32 in ``out`` (a reused float32 buffer
    of at least as many values), without allocating; float32 and float64 are views of ``raw``.
    Returns the decoded values (a view of ``out`` or of ``raw``)."""
    name = stored.name
    if name in ("float32", "float64"):
        return raw.view(np.dtype("<" + _NATIVE[name]))
    count = raw.size // stored.itemsize
    target = out[:count]
    if name == "bfloat16":
        np.left_shift(raw.view("<u2"), 16, out=target.view(np.uint32), dtype=np.uint32)
    elif name == "float16":
        np.copyto(target, raw.view("<f2"))
    elif name in _FLOAT8:
        np.take(float8_table(name), raw, out=target)
    else:
        raise ValueError(f"cannot decode {name} in place")
    return target


def widen(array: np.ndarray) -> np.ndarray:
    """A float NumPy array as float32 (float64 kept); other types unchanged."""
    if array.dtype == np.float64 or array.dtype == np.float32 or array.dtype.kind != "f":
        return array
    return array.astype(np.float32)
