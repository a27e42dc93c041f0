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

import numpy as np
import torch

MAD_TO_SIGMA = 1.4826
INT8_MAX = 127


# From this many values, order statistics come from a histogram and a small exact selection
# (three vectorized passes) instead of a partition of the whole tensor.
HISTOGRAM_SELECT_FROM = 1 << 20
HISTOGRAM_BINS = 1 << 16


def _select_by_histogram(flat: torch.Tensor, kth: list[int]) -> list[float] | None:
    """The k-th smallest values (0-based, exact) via a histogram: find the bins that hold them,
    count what lies below, and sort only the values in that window. None when it cannot tell."""
    low, high = (float(v) for v in torch.aminmax(flat))
    if not (math.isfinite(low) and math.isfinite(high)) or low == high:
        return None if low != high else [low] * len(kth)
    histogram = torch.histc(flat, bins=HISTOGRAM_BINS, min=low, max=high)
    cumulative = torch.cumsum(histogram.double(), 0)
    first = int(torch.searchsorted(cumulative, torch.tensor(float(min(kth) + 1), dtype=torch.float64)))
    last = int(torch.searchsorted(cumulative, torch.tensor(float(max(kth) + 1), dtype=torch.float64)))
    width = (high - low) / HISTOGRAM_BINS
    # One bin of slack on each side: histc's float binning need not match these edges exactly.
    start = low + max(first - 1, 0) * width
    stop = low + min(last + 2, HISTOGRAM_BINS) * width
    below = int(torch.count_nonzero(flat < start))
    window = flat[(flat >= start) & (flat <= stop)]
    if window.numel() > max(1 << 22, flat.numel() // 8):
        return None  # a pathological distribution: let the partition do it
    ordered = torch.sort(window).values
    picked = []
    for k in kth:
        index = k - below
        if not 0 <= index < ordered.numel():
            return None
        picked.append(float(ordered[index]))
    return picked


def median(flat: torch.Tensor, scratch: bool = False) -> float:
    """The statistical median (mean of the two middle values for an even count), as NumPy's.

    ``torch.median`` returns the lower middle value instead, which shifts boundary decisions. On
    the CPU NumPy's introselect finds both middle values in one pass; with ``scratch=True`` the
    caller's temporary is partitioned in place instead of copied.
    """
    count = flat.numel()
    middle = count // 2
    kth = [middle] if count % 2 else [middle - 1, middle]
    if count >= HISTOGRAM_SELECT_FROM:
        picked = _select_by_histogram(flat, kth)
        if picked is not None:
            return sum(picked) / len(picked)
    if flat.device.type == "cpu":
        array = flat.numpy()
        if scratch:
            array.partition(kth)
            parted = array
        else:
            parted = np.partition(array, kth)
        picked = [float(parted[k]) for k in kth]
    else:
        picked = [float(flat.kthvalue(k + 1).values) for k in kth]
    return sum(picked) / len(picked)


def outlier_share(flat: torch.Tensor, sigmas: float = 3.0) -> tuple[float, dict[str, Any]]:
    """Share (%) of values beyond ``sigmas`` robust σ, with the centre and scale used.

    Computed in the tensor's precision (float32), with one temporary the size of the tensor: a
    value within ~1e-7 (relative) of the 3σ boundary may land on the other side than in float64.
    """
    center = median(flat)
    deviations = (flat - center).abs_()
    scale = MAD_TO_SIGMA * median(deviations, scratch=True)  # reorders the temporary; counts don't care
    method = "median/MAD"
    if scale == 0:
        method = "mean/std"
        center = float(torch.sum(flat)) / flat.numel()
        torch.sub(flat, center, out=deviations)
        scale = (float(torch.sum(deviations * deviations)) / flat.numel()) ** 0.5
        deviations.abs_()
    if scale == 0:
        return 0.0, {"center": center, "scale": 0.0, "scale_method": method}
    count = int(torch.count_nonzero(deviations > sigmas * scale))
    return 100.0 * count / flat.numel(), {"center": center, "scale": scale, "scale_method": method}


def sqnr_db(matrix: torch.Tensor, per_channel: bool, signal: float | None = None,
            absmax: float | None = None) -> float | None:
    """int8 symmetric absmax SQNR in dB; None for an all-zero matrix, inf when q(w) = w exactly.

    ``signal`` (Σw²) and ``absmax`` may be passed in when already known (the shared norms).
    """
    if per_channel:
        low, high = torch.aminmax(matrix, dim=1, keepdim=True)
        row_max = torch.maximum(-low, high)
        if float(row_max.max()) == 0:
            return None
        scale = torch.where(row_max > 0, row_max / INT8_MAX, torch.ones_like(row_max))
    else:
        absmax = float(matrix.abs().max()) if absmax is None else absmax
        if absmax == 0:
            return None
        scale = absmax / INT8_MAX
    error = torch.div(matrix, scale)
    error.round_().clamp_(-INT8_MAX, INT8_MAX).mul_(scale).sub_(matrix)
    noise = float(torch.sum(error.mul_(error)))
    if signal is None:
        signal = float(torch.sum(matrix * matrix))
    if noise == 0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


def kurtosis(flat: torch.Tensor, mean: float | None = None) -> float | None:
    """Pearson kurtosis E[(x−μ)⁴]/σ⁴ (3 for a Gaussian)."""
    if mean is None:
        mean = float(torch.sum(flat)) / flat.numel()
    squared = flat - mean
    squared.mul_(squared)
    second = float(torch.sum(squared)) / flat.numel()
    if second == 0:
        return None
    fourth = float(torch.sum(squared.mul_(squared))) / flat.numel()
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


def quantization_group(matrix: torch.Tensor, norms: dict[str, Any] | None = None,
                       flat: torch.Tensor | None = None) -> dict[str, Any]:
    """Quantization statistics of a finite matrix (outputs × inputs).

    ``norms`` (l2, max_abs, mean_abs, mean) and ``flat`` (the values in storage order, contiguous)
    are passed in by the shared statistics when known, so nothing is computed twice.
    """
    flat = matrix.reshape(-1) if flat is None else flat
    if norms is None:
        absolute = flat.abs()
        norms = {"l2": float(torch.sum(flat * flat)) ** 0.5, "max_abs": float(absolute.max()),
                 "mean_abs": float(torch.sum(absolute)) / flat.numel(), "mean": float(torch.sum(flat)) / flat.numel()}
    share, robust = outlier_share(flat)
    signal = norms["l2"] ** 2
    per_tensor = sqnr_db(matrix, per_channel=False, signal=signal, absmax=norms["max_abs"])
    per_channel = sqnr_db(matrix, per_channel=True, signal=signal)
    return {
        "extreme_outlier_percentage": share,
        "outlier_center": robust["center"],
        "outlier_scale": robust["scale"],
        "outlier_scale_method": robust["scale_method"],
        "sqnr_db": per_tensor,
        "sqnr_db_per_channel": per_channel,
        "dynamic_range": norms["max_abs"] / norms["mean_abs"] if norms["mean_abs"] > 0 else None,
        "kurtosis": kurtosis(flat, norms["mean"]),
        "recommended": recommend(share, per_tensor, per_channel),
    }
