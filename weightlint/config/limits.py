"""Documented limits on what one input may make weightlint read, allocate or build.

Each limit bounds time or memory against a hostile or broken file (a 53-byte GGUF declaring 2^62
array items, a header as long as the file, a zip bomb, a config with 50,000 layers). A file that
exceeds one is not read further and gets a WL009 finding naming the limit, its value and how to
raise it. The defaults sit far above every real checkpoint (docs/security.md lists them with the
largest real value seen).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, Iterator


@dataclass(frozen=True)
class Limits:
    # A safetensors header, an ONNX file's protobuf, a shard index or a config.json (bytes).
    header_bytes: int = 100_000_000  # the safetensors library refuses larger headers too
    # Tensors in one file (the largest real shards hold tens of thousands).
    tensors_per_file: int = 100_000
    # Metadata keys and the items of one metadata array (GGUF token lists reach ~256k).
    metadata_items: int = 10_000_000
    # Dimensions of one tensor.
    tensor_dims: int = 16
    # A pickle inside a zip, decompressed, when it is read whole for a security scan (bytes).
    pickle_bytes: int = 1 << 30
    # Layers a config.json may ask the model skeleton to build.
    skeleton_layers: int = 1024

    def describe(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


DEFAULT = Limits()
NAMES = tuple(field.name for field in fields(Limits))
_active = DEFAULT


class LimitExceeded(Exception):
    """An input exceeds a limit: a WL009 finding, never a crash."""

    def __init__(self, limit: str, value: Any, what: str = "") -> None:
        self.limit, self.value = limit, value
        allowed = getattr(current(), limit)
        subject = f"{what} " if what else ""
        super().__init__(f"{subject}{value:,} exceeds the limit {limit}={allowed:,} "
                         f"(raise it under `limits:` in weightlint.yaml if the file is trusted)")


def current() -> Limits:
    return _active


@contextmanager
def using(limits: Limits) -> Iterator[Limits]:
    """Make ``limits`` the ones sources check, for the duration of a run."""
    global _active
    previous, _active = _active, limits
    try:
        yield limits
    finally:
        _active = previous


def from_mapping(values: dict[str, int]) -> Limits:
    return replace(DEFAULT, **values)


def check(limit: str, value: int, what: str = "") -> None:
    if value > getattr(current(), limit):
        raise LimitExceeded(limit, value, what)


def load_json(data: bytes | str, what: str) -> Any:
    """JSON within the size limit; ValueError (naming ``what``) for anything that is not plain JSON.

    Python's parser recurses once per level (1000 nested brackets raise RecursionError) and reads
    ``Infinity``, ``NaN`` and ``1e400`` as floats that no offset or shape can be: all are refused.
    """
    check("header_bytes", len(data), f"{what} size")
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"{what} nests too deeply") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not valid JSON: {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text}")
    return value
