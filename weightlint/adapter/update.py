"""The LoRA pairs of an adapter and the updates they apply, judged without materializing them.

A pair ``lora_A`` (r × in) and ``lora_B`` (out × r) adds ΔW = s·B·A to the base weight, s being the
scale PEFT applies (``AdapterConfig.scale_of``). With B = Q_B·R_B and Aᵀ = Q_A·R_A (thin QR
factorizations), ΔW = Q_B·(s·R_B·R_Aᵀ)·Q_Aᵀ: the singular values of ΔW are those of the r×r core
s·R_B·R_Aᵀ, and the norm of output row i is s·‖B[i]·R_Aᵀ‖. Embedding adapters
(``lora_embedding_A``: r × vocabulary, ``lora_embedding_B``: dim × r) update the embedding matrix
by (s·B·A)ᵀ: one row per token.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightlint.adapter.config import AdapterConfig
from weightlint.record import TensorRecord

_PART = re.compile(r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
                   r"(?:\.(?!weight$|bias$)[^.]+)?(?:\.(?P<leaf>weight|bias))?$")
FACTORS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
PREFIX = "base_model.model."
TOP_ROWS = 3  # an update "concentrated on a few rows": the share of its energy in this many


def module_of(name: str) -> str:
    """A module's name as PEFT's configuration names it (without ``base_model.model.``)."""
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def part_of(name: str) -> tuple[str, str] | None:
    """(module, part) of an adapter tensor's name (``…query.lora_A.weight`` → (``…query``,
    ``lora_A``)); ``lora_B.bias`` is ``lora_bias``; None for a tensor that is no LoRA factor."""
    match = _PART.match(name)
    if match is None:
        return None
    part = "lora_bias" if match.group("leaf") == "bias" else match.group("part")
    return module_of(match.group("module")), part


@dataclass
class LoraPair:
    """One module's factors and, once measured, what its update does."""

    module: str
    a: TensorRecord | None = None
    b: TensorRecord | None = None
    magnitude: TensorRecord | None = None  # DoRA
    declared_rank: int = 0
    scale: float = 0.0
    measures: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding(self) -> bool:
        return any(record is not None and "embedding" in record.name for record in (self.a, self.b))

    @property
    def complete(self) -> bool:
        return self.a is not None and self.b is not None

    @property
    def record(self) -> TensorRecord:
        """The record findings about the whole update are reported on (its B factor)."""
        return self.b or self.a or self.magnitude

    @property
    def family(self) -> str:
        """The module's kind across depth (``encoder.layer.*.attention.self.query``)."""
        return re.sub(r"\.\d+\.", ".*.", f".{self.module}.").strip(".")

    @property
    def depth(self) -> int | None:
        numbers = re.findall(r"\.(\d+)\.", f".{self.module}.")
        return int(numbers[0]) if numbers else None


def pair_records(records: list[TensorRecord], config: AdapterConfig) -> tuple[list[LoraPair], list[TensorRecord]]:
    """The LoRA pairs by module (in the records' order), and the tensors that are no LoRA factor."""
    pairs: dict[str, LoraPair] = {}
    others: list[TensorRecord] = []
    for record in records:
        found = part_of(record.name)
        if found is None:
            others.append(record)
            continue
        module, part = found
        pair = pairs.setdefault(module, LoraPair(module, declared_rank=config.rank_of(module),
                                                 scale=config.scale_of(module)))
        if part in ("lora_A", "lora_embedding_A"):
            pair.a = record
        elif part in ("lora_B", "lora_embedding_B"):
            pair.b = record
        elif part == "lora_magnitude_vector":
            pair.magnitude = record
    return list(pairs.values()), others


def as_float64(values: Any) -> np.ndarray:
    if not isinstance(values, np.ndarray):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def measure(pair: LoraPair, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """What the update ΔW = s·B·A does, from the factors (float64): rank, norms, row shares."""
    if a.size == 0 or b.size == 0 or a.ndim < 2 or b.ndim < 2:
        return {"finite": True, "inner_rank": a.shape[0] if a.ndim else 0, "a_zero": True, "b_zero": True,
                "norm": 0.0, "rank": 0}
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return {"finite": False}
    inner = a.shape[0]
    result: dict[str, Any] = {"finite": True, "inner_rank": inner, "a_zero": not a.any(), "b_zero": not b.any()}
    if result["a_zero"] or result["b_zero"] or b.shape[1] != inner:
        return {**result, "norm": 0.0, "rank": 0}
    _, r_b = np.linalg.qr(b)
    _, r_a = np.linalg.qr(a.T)
    singular = np.linalg.svd(pair.scale * r_b @ r_a.T, compute_uv=False)
    resolution = max(_resolution(pair.a), _resolution(pair.b))
    tolerance = singular[0] * resolution if singular.size else 0.0
    rows = (pair.scale ** 2) * np.sum((b @ r_a.T) ** 2, axis=1)  # ‖ΔW[i]‖², i an output row
    energy = float(rows.sum())
    top = np.sort(rows)[::-1]
    return {
        **result,
        "norm": math.sqrt(float(np.sum(singular ** 2))),
        "spectral_norm": float(singular[0]) if singular.size else 0.0,
        "singular_values": [float(value) for value in singular],
        "rank": int(np.sum(singular > tolerance)),
        "rank_resolution": resolution,
        "rows": int(rows.size),
        "top_rows": [int(index) for index in np.argsort(rows)[::-1][:TOP_ROWS]],
        "top_rows_share": float(top[:TOP_ROWS].sum() / energy) if energy > 0 else 0.0,
    }


def _resolution(record: TensorRecord | None) -> float:
    """The relative size below which a singular value of a product of factors stored in this
    type is rounding, not rank: 1e-4 for float32, 1e-2 for 16-bit floats (bf16 keeps 8 bits)."""
    if record is None or record.dtype.itemsize >= 4:
        return 1e-4
    return 1e-2


def dense_update(pair: LoraPair, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ΔW itself, in the base weight's layout: only for the comparison with a base model."""
    delta = pair.scale * (b.reshape(b.shape[0], -1) @ a.reshape(a.shape[0], -1))
    return delta.T if pair.embedding else delta
