"""How a change between two checkpoints is measured, and how the WL7xx rules read it."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

BLOCK = 1 << 20  # values per block of the float64 sums
ROW = 128  # values per float32 dot product of dot(): ~2e-8 relative, measured


def change_statistics(old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    """Norms, ratio, relative change and cosine of two tensors of one shape, in float64 blocks."""
    old_flat, new_flat = old.reshape(-1), new.reshape(-1)
    return chunked_change_statistics((old_flat[start:start + BLOCK], new_flat[start:start + BLOCK])
                                     for start in range(0, old_flat.size, BLOCK))


def chunked_change_statistics(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """``change_statistics`` from consecutive (old, new) chunks of the two flattened tensors."""
    sums = np.zeros(4)  # ‖old‖², ‖new‖², ⟨old, new⟩, ‖new − old‖²
    finite = new_finite = True
    for old_chunk, new_chunk in pairs:
        if finite:
            difference = new_chunk - old_chunk
            sums += [dot(old_chunk, old_chunk), dot(new_chunk, new_chunk), dot(old_chunk, new_chunk),
                     dot(difference, difference)]
            finite = bool(np.isfinite(sums).all())
        if not finite:
            new_finite = new_finite and bool(np.isfinite(new_chunk).all())
    if not finite:
        return not_finite(new_finite)
    stats = from_norms(math.sqrt(sums[0]), math.sqrt(sums[1]), math.sqrt(sums[3]))
    if stats["cosine"] is not None:
        stats["cosine"] = max(-1.0, min(1.0, float(sums[2] / (stats["old_l2"] * stats["new_l2"]))))
    stats["changed"] = stats["change_l2"] > 0
    return stats


def dot(x: np.ndarray, y: np.ndarray) -> float:
    """Σxy to about 1e-8 relative at float32 speed: float32 dot products of 128 values each,
    summed in float64. Redone in float64 when float32 overflows (values beyond ~1e19), so that
    only NaN/Inf values make it non-finite."""
    if x.dtype == np.float32 and y.dtype == np.float32:
        whole = x.size - x.size % ROW
        tail = float(x[whole:].astype(np.float64) @ y[whole:].astype(np.float64))
        total = float(np.einsum("ij,ij->i", x[:whole].reshape(-1, ROW), y[:whole].reshape(-1, ROW))
                      .sum(dtype=np.float64)) + tail
        if math.isfinite(total):
            return total
    total = 0.0
    for start in range(0, x.size, BLOCK):
        total += float(x[start:start + BLOCK].astype(np.float64) @ y[start:start + BLOCK].astype(np.float64))
    return total


def not_finite(new_finite: bool) -> dict[str, Any]:
    """The statistics of a pair holding NaN/Inf: nothing is measured."""
    return {"finite": False, "new_finite": new_finite, "old_l2": None, "new_l2": None, "l2_norm_ratio": None,
            "relative_change": None, "cosine": None, "change_l2": None}


def from_norms(old_l2: float, new_l2: float, change_l2: float | None) -> dict[str, Any]:
    """Ratio, relative change and cosine from the two norms and ‖NEW−OLD‖ (None: not measured).

    A zero old norm (a zero-initialized bias, LoRA B) has no ratio: the rules judge its new norm.
    """
    cosine = None
    if change_l2 is not None and old_l2 > 0 and new_l2 > 0:  # ⟨a, b⟩ = (‖a‖² + ‖b‖² − ‖b − a‖²) / 2
        cosine = max(-1.0, min(1.0, (old_l2 ** 2 + new_l2 ** 2 - change_l2 ** 2) / (2 * old_l2 * new_l2)))
    return {
        "finite": True,
        "old_l2": old_l2,
        "new_l2": new_l2,
        "l2_norm_ratio": new_l2 / old_l2 if old_l2 > 0 else None,
        "relative_change": change_l2 / old_l2 if old_l2 > 0 and change_l2 is not None else None,
        "change_l2": change_l2,
        "cosine": cosine,
    }


def movement(stats: dict[str, Any]) -> float | None:
    """How far a tensor moved: its relative change, or for a tensor that was all zero (a
    zero-initialized bias, a LoRA B) its new norm. None when it holds NaN/Inf."""
    if stats.get("old_l2") == 0:
        return stats.get("new_l2")
    return stats.get("relative_change")


def named_by(name: str, patterns: list[str]) -> bool:
    """Whether a tensor name matches one of the globs (or ``re:`` regexes) of a rule's option."""
    from weightlint.config import Pattern

    return any(Pattern(pattern).matches(name) for pattern in patterns)
