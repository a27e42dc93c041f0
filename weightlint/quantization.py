"""Quantization statistics of one weight matrix: outliers, int8 SQNR, dynamic range.

Definitions (documented in ``weightlint explain WL201``/``WL202``):

- ``extreme_outlier_percentage``: share (in %) of values farther than 3σ from the centre, with a
  robust centre and scale, the median and 1.4826·MAD (equal to σ for a Gaussian); when MAD is 0
  (more than half the values equal), the mean and standard deviation. The robust scale is what
  lets the share exceed Chebyshev's 1/9 bound for mean/std, as the guide's 12.8% does.
- ``sqnr_db``: symmetric absmax int8, per tensor: scale = max|w|/127, q = clamp(round(w/scale),
  −127, 127)·scale, SQNR = 10·log10(Σw² / Σ(w − q)²) (torch.ao's and torchao's formula).
- ``sqnr_db_per_channel``: the same with one scale per output row, noise summed over the matrix.
"""

from __future__ import annotations

import math
from typing import Any

import torch

MAD_TO_SIGMA = 1.4826
INT8_MAX = 127


def median(flat: torch.Tensor) -> float:
    """The statistical median (mean of the two middle values for an even count), as NumPy's.

    ``torch.median`` returns the lower middle value instead, which shifts boundary decisions.
    """
    count = flat.numel()
    middle = count // 2
    if count % 2:
        return float(flat.kthvalue(middle + 1).values)
    return (float(flat.kthvalue(middle).values) + float(flat.kthvalue(middle + 1).values)) / 2


def robust_center_scale(flat: torch.Tensor) -> tuple[float, float, str]:
    center = median(flat)
    scale = MAD_TO_SIGMA * median((flat - center).abs())
    if scale > 0:
        return center, scale, "median/MAD"
    mean = float(flat.mean(dtype=torch.float64)) if flat.dtype != torch.float64 else float(flat.mean())
    std = float(flat.double().std(unbiased=False)) if flat.numel() > 1 else 0.0
    return mean, std, "mean/std"


# Up to this many values the outlier statistics run in float64 (128 MB), beyond it in float32.
FLOAT64_UP_TO = 1 << 24


def outlier_share(flat: torch.Tensor, sigmas: float = 3.0) -> tuple[float, dict[str, Any]]:
    if flat.numel() <= FLOAT64_UP_TO:
        flat = flat.double()
    center, scale, method = robust_center_scale(flat)
    if scale == 0:
        return 0.0, {"center": center, "scale": 0.0, "scale_method": method}
    count = int(((flat - center).abs() > sigmas * scale).sum())
    return 100.0 * count / flat.numel(), {"center": center, "scale": scale, "scale_method": method}


def sqnr_db(matrix: torch.Tensor, per_channel: bool) -> float | None:
    """int8 symmetric absmax SQNR in dB; None for an all-zero matrix, inf when q(w) = w exactly."""
    absmax = matrix.abs().amax(dim=1, keepdim=True) if per_channel else matrix.abs().max()
    if float(absmax.max()) == 0:
        return None
    scale = absmax / INT8_MAX
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = torch.clamp(torch.round(matrix / safe_scale), -INT8_MAX, INT8_MAX) * safe_scale
    signal = float(torch.sum(matrix * matrix, dtype=torch.float64))
    error = matrix - quantized
    noise = float(torch.sum(error * error, dtype=torch.float64))
    if noise == 0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


def kurtosis(flat: torch.Tensor) -> float | None:
    """Pearson kurtosis E[(x−μ)⁴]/σ⁴ (3 for a Gaussian)."""
    values = flat.double() if flat.numel() <= 1 << 24 else flat
    centered = values - values.mean(dtype=torch.float64) if values.dtype != torch.float64 else values - values.mean()
    second = float(torch.mean(centered * centered, dtype=torch.float64))
    if second == 0:
        return None
    fourth = float(torch.mean((centered * centered) ** 2, dtype=torch.float64))
    return fourth / second**2


def recommend(outliers: float, per_tensor: float | None, per_channel: float | None) -> str:
    """The guide's decision tree, with per-channel int8 as the middle branch."""
    per_tensor = math.inf if per_tensor is None else per_tensor
    per_channel = math.inf if per_channel is None else per_channel
    if outliers > 10 or (outliers > 1 and per_channel < 30):
        return "fp16"
    if per_channel < 30:
        return "int16"
    if per_tensor >= 40 and outliers < 0.1:
        return "int8"
    return "int8-per-channel"


def quantization_group(matrix: torch.Tensor) -> dict[str, Any]:
    flat = matrix.reshape(-1)
    share, robust = outlier_share(flat)
    per_tensor = sqnr_db(matrix, per_channel=False)
    per_channel = sqnr_db(matrix, per_channel=True)
    absolute = flat.abs()
    mean_abs = float(absolute.mean(dtype=torch.float64)) if flat.dtype != torch.float64 else float(absolute.mean())
    return {
        "extreme_outlier_percentage": share,
        "outlier_center": robust["center"],
        "outlier_scale": robust["scale"],
        "outlier_scale_method": robust["scale_method"],
        "sqnr_db": per_tensor,
        "sqnr_db_per_channel": per_channel,
        "dynamic_range": float(absolute.max()) / mean_abs if mean_abs > 0 else None,
        "kurtosis": kurtosis(flat),
        "recommended": recommend(share, per_tensor, per_channel),
    }
