"""Builders of tensors with known ground truth, and independent float64 numpy references.

Nothing here imports weightlint: every expected value is computed from first principles, so the
rule tests compare weightlint against an independent implementation of each definition.
"""

from __future__ import annotations

import numpy as np
import torch

MAD_TO_SIGMA = 1.4826


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def orthonormal(rows: int, columns: int, generator: np.random.Generator) -> np.ndarray:
    """``rows × columns`` with orthonormal columns (QR of a float64 Gaussian)."""
    q, r = np.linalg.qr(generator.standard_normal((rows, columns)))
    return q * np.sign(np.diag(r))


def with_singular_values(rows: int, columns: int, singular_values, seed: int = 0) -> np.ndarray:
    """``U·diag(s)·Vᵀ`` in float64 with exactly the given singular values (len = min(rows, columns))."""
    s = np.asarray(singular_values, dtype=np.float64)
    k = min(rows, columns)
    assert s.shape == (k,)
    generator = rng(seed)
    u, v = orthonormal(rows, k, generator), orthonormal(columns, k, generator)
    return (u * s) @ v.T


def with_condition(rows: int, columns: int, condition: float, seed: int = 0) -> np.ndarray:
    """Singular values log-spaced from 1 down to 1/condition."""
    return with_singular_values(rows, columns, np.geomspace(1.0, 1.0 / condition, min(rows, columns)), seed)


def gaussian(shape, std: float = 1.0, seed: int = 0) -> np.ndarray:
    return rng(seed).normal(0.0, std, size=shape)


def tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)


def stored(t: torch.Tensor) -> np.ndarray:
    """The stored values, exactly, as float64 numpy."""
    return t.detach().to(torch.float64).numpy()


# -- independent references --------------------------------------------------------------------
def singular_values(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)


def condition_number(matrix: np.ndarray) -> float:
    s = singular_values(matrix)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def stable_rank(matrix: np.ndarray) -> float:
    s = singular_values(matrix)
    return float(np.sum(s**2) / s[0] ** 2)


def outlier_percentage(values: np.ndarray, sigmas: float = 3.0) -> float:
    """Share (%) beyond ``sigmas``·(1.4826·MAD) of the median; mean/std when MAD is 0."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    center = np.median(flat)
    scale = MAD_TO_SIGMA * np.median(np.abs(flat - center))
    if scale == 0:
        center, scale = flat.mean(), flat.std()
    if scale == 0:
        return 0.0
    return 100.0 * np.count_nonzero(np.abs(flat - center) > sigmas * scale) / flat.size


def int8_sqnr_db(matrix: np.ndarray, per_channel: bool) -> float:
    """Symmetric absmax int8: scale = max|w|/127, q = clip(round(w/scale), ±127)·scale."""
    w = np.asarray(matrix, dtype=np.float64)
    absmax = np.abs(w).max(axis=1, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(absmax > 0, absmax / 127.0, 1.0)
    q = np.clip(np.round(w / scale), -127, 127) * scale
    return float(10.0 * np.log10(np.sum(w * w) / np.sum((w - q) ** 2)))


def dynamic_range(matrix: np.ndarray) -> float:
    a = np.abs(np.asarray(matrix, dtype=np.float64))
    return float(a.max() / a.mean())


def pearson_kurtosis(values: np.ndarray) -> float:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    c = x - x.mean()
    return float(np.mean(c**4) / np.mean(c**2) ** 2)


def rms(values: np.ndarray) -> float:
    x = np.asarray(values, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x)))


# -- fixtures with a planted property ----------------------------------------------------------
def outlier_mixture(shape=(256, 256), seed: int = 0) -> np.ndarray:
    """85% N(0, 0.001) + 15% N(0, 0.1): far more than 10% beyond a robust 3σ."""
    generator = rng(seed)
    n = int(np.prod(shape))
    wide = generator.random(n) < 0.15
    values = np.where(wide, generator.normal(0, 0.1, n), generator.normal(0, 0.001, n))
    return values.reshape(shape)


def with_moderate_outliers(shape=(64, 1024), share: float = 0.03, spike: float | None = None,
                           seed: int = 0) -> np.ndarray:
    """N(0, 1) bulk with ``share`` of the values moved to ±6..8 (beyond 3σ); optionally one
    ``spike`` per row, which sets every row's int8 scale without carrying much energy."""
    generator = rng(seed)
    w = generator.standard_normal(shape)
    n = w.size
    chosen = generator.choice(n, size=int(round(share * n)), replace=False)
    flat = w.reshape(-1)
    flat[chosen] = generator.choice([-1.0, 1.0], size=chosen.size) * generator.uniform(6.0, 8.0, chosen.size)
    if spike is not None:
        columns = generator.integers(0, shape[1], size=shape[0])
        w[np.arange(shape[0]), columns] = spike
    return w


def low_stable_rank(size: int = 768, seed: int = 0) -> tuple[np.ndarray, float]:
    """Singular values 1, 1, 1, 0.8 and a flat tail carrying 0.06: stable rank exactly 3.7."""
    tail = np.full(size - 4, np.sqrt(0.06 / (size - 4)))
    s = np.concatenate([[1.0, 1.0, 1.0, 0.8], tail])
    return with_singular_values(size, size, s, seed), float(np.sum(s**2))


def trained_like(rows: int, columns: int, rank: int = 8, strength: float = 10.0, seed: int = 0) -> np.ndarray:
    """Random init N(0, 1/columns) plus a strong rank-``rank`` signal well above the MP bulk."""
    generator = rng(seed)
    noise = generator.normal(0, 1 / np.sqrt(columns), (rows, columns))
    signal = orthonormal(rows, rank, generator) @ orthonormal(columns, rank, generator).T
    return noise + strength * signal
