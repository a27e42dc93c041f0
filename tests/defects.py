"""Defect generators: the test suite's (and the calibration harness's) ways of breaking one tensor.

NumPy only. Every generator takes a float32 array (a weight matrix, a conv kernel, any shape with at
least one value) and returns a NEW float32 array of the same shape; the input is never modified.
Random choices (positions, signs, values) come from ``numpy.random.default_rng(seed)``, so the same
input and seed always give the same output.

Axis 0 is the output axis, as PyTorch stores weights: a ``Linear`` weight is ``out × in``, a conv
kernel ``out × in × kh × kw`` (GGUF tensors read by weightlint are in the same orientation).

:data:`DEFECTS` maps each defect's name to a :class:`Defect`: the generator, the rule codes of
which ANY ONE catching it on the planted tensor counts as caught (so that a redesigned rule set may
catch a defect with another rule; the harness reports which rule did), and the lowest severity that
counts. ``benchmarks/calibrate.py`` plants each one in real models; ``tests/test_corpus.py`` and
``tests/test_minilm_diagnostics.py`` assert on the results.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

FP16_MAX = 65504.0


def _copy(w: np.ndarray) -> np.ndarray:
    out = np.array(w, dtype=np.float32, copy=True)
    if out.size == 0:
        raise ValueError("a defect needs a tensor with at least one value")
    return out


def _position(w: np.ndarray, seed: int) -> tuple[int, ...]:
    """One deterministic index into ``w``."""
    flat = int(np.random.default_rng(seed).integers(w.size))
    return tuple(int(i) for i in np.unravel_index(flat, w.shape))


def _as_matrix(w: np.ndarray) -> np.ndarray:
    """``out × rest`` (a vector is one row)."""
    return w.reshape(1, -1) if w.ndim < 2 else w.reshape(w.shape[0], -1)


def nan(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """One NaN, at a seeded random position; every other value unchanged."""
    out = _copy(w)
    out[_position(out, seed)] = np.nan
    return out


def inf(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """One +Inf, at a seeded random position; every other value unchanged."""
    out = _copy(w)
    out[_position(out, seed)] = np.inf
    return out


def dead_row(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """One output unit set exactly to 0: a row of a matrix, the whole filter ``w[i, ...]`` of a
    conv kernel (every input channel and tap). The unit is chosen at random (seeded)."""
    out = _copy(w)
    row = int(np.random.default_rng(seed).integers(out.shape[0])) if out.ndim else 0
    out[row, ...] = 0.0
    return out


def scale_x5(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """The whole tensor multiplied by 5 (an exploding layer: RMS ×5 against its siblings)."""
    return _copy(w) * np.float32(5)


def scale_x50(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """The whole tensor multiplied by 50."""
    return _copy(w) * np.float32(50)


def rank_collapse(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """The best rank-k approximation of ``out × rest`` (truncated SVD, Eckart–Young), with
    k = max(1, min(m, n) // 64), rescaled to the original Frobenius norm so that only the spectrum
    changes, not the scale. The result is exactly singular (infinite condition number) and its
    stable rank is at most k."""
    out = _copy(w)
    matrix = _as_matrix(out).astype(np.float64)
    k = max(1, min(matrix.shape) // 64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    low = (u[:, :k] * s[:k]) @ vt[:k]
    norm, low_norm = np.linalg.norm(matrix), np.linalg.norm(low)
    if low_norm > 0:
        low *= norm / low_norm
    return low.reshape(out.shape).astype(np.float32)


def outliers_15(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """15% of the values, at seeded random positions, set to ±8σ with random signs, where
    σ = max(std, 1.4826·MAD) of the original tensor. After planting, the tensor's robust σ
    (1.4826·MAD) grows by well under 1.5×, so every planted value lies beyond 5 robust σ: an
    extreme-outlier share of about 15% (plus the tensor's own), far above 10%."""
    out = _copy(w)
    values = out.astype(np.float64).ravel()
    sigma = max(float(values.std()), 1.4826 * float(np.median(np.abs(values - np.median(values)))))
    rng = np.random.default_rng(seed)
    count = max(1, int(round(0.15 * out.size)))
    where = rng.choice(out.size, size=count, replace=False)
    signs = rng.choice(np.array([-1.0, 1.0]), size=count)
    flat = out.reshape(-1)
    flat[where] = (signs * 8.0 * sigma).astype(np.float32)
    return out


def fp16_overflow(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """One value (seeded random position) set to 1e6, beyond float16's largest finite 65504:
    it becomes +Inf when the tensor is cast to fp16."""
    out = _copy(w)
    out[_position(out, seed)] = np.float32(1e6)
    return out


def duplicate(w: np.ndarray, source: np.ndarray, seed: int = 0) -> np.ndarray:
    """An exact copy of another tensor of the same shape (``source``): a layer saved twice, a
    copy-paste in a conversion script. The original values of ``w`` are discarded."""
    if tuple(np.shape(source)) != tuple(np.shape(w)):
        raise ValueError(f"duplicate: source shape {np.shape(source)} differs from {np.shape(w)}")
    return _copy(source)


def zeroed(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every value 0 (a layer whose weights were never loaded, or were zero-initialised)."""
    return np.zeros(np.shape(w), dtype=np.float32)


def random_reinit(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fresh Gaussian draw N(0, σ²), seeded, with σ = the ORIGINAL tensor's std (not the
    customary 0.02): the layer looks re-initialised (a Marchenko–Pastur spectrum, no learned
    structure) while its RMS stays that of a trained layer, so that the defect is caught by its
    spectrum (WL601) and not merely as a norm change against its siblings."""
    out = _copy(w)
    std = float(out.astype(np.float64).std()) or 0.02
    return (np.random.default_rng(seed).standard_normal(out.shape) * std).astype(np.float32)


def spike_x1000(w: np.ndarray, seed: int = 0) -> np.ndarray:
    """One value (seeded random position) set to 1000 × the tensor's largest |w| (a bit flip in an
    exponent, a corrupted write)."""
    out = _copy(w)
    out[_position(out, seed)] = np.float32(1000.0 * float(np.abs(out).max()))
    return out


class Defect(NamedTuple):
    """A defect: how to plant it, which rule codes catch it (any one of them suffices, on the
    planted tensor), and the lowest severity that counts as caught."""

    generate: Callable[..., np.ndarray]
    codes: frozenset[str]
    severity: str  # "info" | "warning" | "error"


DEFECTS: dict[str, Defect] = {
    "nan": Defect(nan, frozenset({"WL100"}), "warning"),
    "inf": Defect(inf, frozenset({"WL100"}), "warning"),
    "dead_row": Defect(dead_row, frozenset({"WL501"}), "info"),
    "scale_x5": Defect(scale_x5, frozenset({"WL301"}), "warning"),
    "scale_x50": Defect(scale_x50, frozenset({"WL301"}), "warning"),
    "rank_collapse": Defect(rank_collapse, frozenset({"WL401", "WL101"}), "warning"),
    # A dense matrix gets WL201's second-population warning; every tensor also changes its norm ~3×
    # (WL301 against its siblings).
    "outliers_15": Defect(outliers_15, frozenset({"WL201", "WL301"}), "warning"),
    "fp16_overflow": Defect(fp16_overflow, frozenset({"WL102"}), "warning"),
    "duplicate": Defect(duplicate, frozenset({"WL502"}), "warning"),
    "zeroed": Defect(zeroed, frozenset({"WL503"}), "warning"),
    "random_reinit": Defect(random_reinit, frozenset({"WL601"}), "warning"),
    "spike_x1000": Defect(spike_x1000, frozenset({"WL203", "WL301", "WL201", "WL202"}), "warning"),
}
"""name → (generator, any-of rule codes, minimum severity). ``duplicate``'s generator also takes
the source array: ``DEFECTS["duplicate"].generate(w, source)``."""

__all__ = ["DEFECTS", "Defect", *DEFECTS]
