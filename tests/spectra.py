"""Matrices with known ground truth: chosen singular values, chosen outlier shares."""

from __future__ import annotations

import numpy as np
import torch


def orthonormal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def with_singular_values(shape: tuple[int, int], singular: np.ndarray, seed: int = 0) -> np.ndarray:
    """U·diag(s)·Vᵀ in float64 with the given singular values (len = min(shape))."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    k = min(shape)
    u = orthonormal(rows, k, rng)
    v = orthonormal(cols, k, rng)
    return (u * np.asarray(singular, dtype=np.float64)) @ v.T


def with_condition_number(shape: tuple[int, int], condition: float, frobenius: float = 1.0, seed: int = 0) -> np.ndarray:
    k = min(shape)
    singular = np.geomspace(1.0, 1.0 / condition, k)
    singular *= frobenius / np.sqrt(np.sum(singular**2))
    return with_singular_values(shape, singular, seed)


def with_stable_rank(shape: tuple[int, int], stable_rank: float, seed: int = 0) -> np.ndarray:
    """Four leading singular values 1, .9, .8, .7 and a flat tail sized to give the stable rank."""
    k = min(shape)
    head = np.array([1.0, 0.9, 0.8, 0.7])
    tail_energy = stable_rank - np.sum(head**2)
    assert tail_energy > 0
    singular = np.concatenate([head, np.full(k - 4, np.sqrt(tail_energy / (k - 4)))])
    return with_singular_values(shape, singular, seed)


def robust_outlier_share(values: np.ndarray) -> float:
    """Independent float64 reference of quantization.extreme_outlier_percentage."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    center = np.median(flat)
    scale = 1.4826 * np.median(np.abs(flat - center))
    if scale == 0:
        center, scale = flat.mean(), flat.std()
    return 100.0 * np.mean(np.abs(flat - center) > 3 * scale)


def int8_sqnr_db(matrix: np.ndarray, per_channel: bool = False) -> float:
    """Independent float64 reference of symmetric absmax int8 SQNR (torch.ao's formula)."""
    w = np.asarray(matrix, dtype=np.float64)
    absmax = np.abs(w).max(axis=1, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(absmax > 0, absmax / 127.0, 1.0)
    q = np.clip(np.round(w / scale), -127, 127) * scale
    return 10 * np.log10(np.sum(w**2) / np.sum((w - q) ** 2))


def to_tensor(array: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)
