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

from weightlint.backend import backend_for

MAD_TO_SIGMA = 1.4826
INT8_MAX = 127
SPIKE_RANK = 8  # up to 7 isolated values count as spikes


def median(flat: Any, scratch: bool = False) -> float:
    """The statistical median (mean of the two middle values for an even count), as NumPy's.

    ``torch.median`` returns the lower middle value instead, which shifts boundary decisions. On
    the CPU NumPy's introselect finds both middle values in one pass; with ``scratch=True`` the
    caller's temporary is partitioned in place instead of copied.
    """
    xp = backend_for(flat)
    count = xp.numel(flat)
    middle = count // 2
    kth = [middle] if count % 2 else [middle - 1, middle]
    picked = xp.select(flat, kth, scratch=scratch)
    return sum(picked) / len(picked)


def outlier_share(flat: Any, sigmas: float = 3.0) -> tuple[float, dict[str, Any]]:
    """Share (%) of values beyond ``sigmas`` robust σ, with the centre and scale used.

    Computed in the tensor's precision (float32), with one temporary the size of the tensor: a
    value within ~1e-7 (relative) of the 3σ boundary may land on the other side than in float64.
    """
    xp = backend_for(flat)
    count = xp.numel(flat)
    work = xp.copy(flat)  # the one temporary: partitioned for the median, then holds |x − median|
    center = median(work, scratch=True)
    deviations = xp.abs_deviation(flat, center, out=work)
    scale = MAD_TO_SIGMA * median(deviations, scratch=True)  # reorders the temporary; counts don't care
    method = "median/MAD"
    if scale == 0:
        method = "mean/std"
        center = xp.sum(flat) / count
        deviations = xp.abs_deviation(flat, center, out=deviations)
        scale = (xp.sum_squares(deviations) / count) ** 0.5
    if scale == 0:
        return 0.0, {"center": center, "scale": 0.0, "scale_method": method, "spike_ratio": None}
    beyond = xp.count_above(deviations, sigmas * scale)
    return 100.0 * beyond / count, {"center": center, "scale": scale, "scale_method": method,
                                    "spike_ratio": _spike_ratio(deviations, count)}


def _spike_ratio(deviations: Any, count: int) -> float | None:
    """The largest deviation from the centre over the ``SPIKE_RANK``-th largest: how far a few values
    stand out from the rest of the tail (≈1–20 for trained weights, ≥1000 for a planted spike)."""
    if count <= SPIKE_RANK:
        return None
    xp = backend_for(deviations)
    largest = xp.minmax(deviations)[1]
    kth = xp.select(deviations, [count - SPIKE_RANK], scratch=True)[0]
    return largest / kth if kth > 0 else None


def sqnr_db(matrix: Any, per_channel: bool, signal: float | None = None,
            absmax: float | None = None) -> float | None:
    """int8 symmetric absmax SQNR in dB; None for an all-zero matrix, inf when q(w) = w exactly.

    ``signal`` (Σw²) and ``absmax`` may be passed in when already known (the shared norms). The
    scale is absmax/127 (per tensor, or per output row), so |w/scale| ≤ 127 and the clamp of
    round-to-nearest is never active: the noise is Σ(scale·round(w/scale) − w)².
    """
    xp = backend_for(matrix)
    if per_channel:
        row_max = xp.row_absmax(matrix)
        if float(row_max.max()) == 0:
            return None
        scale = xp.scale_rows(row_max, INT8_MAX)
    else:
        if absmax is None:
            low, high = xp.minmax(matrix)
            absmax = max(-low, high)
        if absmax == 0:
            return None
        scale = absmax / INT8_MAX
    noise = xp.rounding_noise(matrix, scale)
    if signal is None:
        signal = xp.sum_squares(matrix)
    if noise == 0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


def kurtosis(flat: Any, mean: float | None = None) -> float | None:
    """Pearson kurtosis E[(x−μ)⁴]/σ⁴ (3 for a Gaussian)."""
    xp = backend_for(flat)
    if mean is None:
        mean = xp.sum(flat) / xp.numel(flat)
    second, fourth = xp.central_moments(flat, mean)
    if second == 0:
        return None
    return fourth / second**2


def recommend(outliers: float, per_tensor: float | None, per_channel: float | None) -> str:
    """The default profile's decision for one matrix (the ``recommended`` statistic)."""
    return decide(outliers, per_tensor, per_channel)[0]


def decide(outliers: float, per_tensor: float | None, per_channel: float | None,
           thresholds: Any = None, tree: str = "default") -> tuple[str, str]:
    """(decision, reason): ``int8``, ``int8-per-channel``, ``int16``, ``fp16`` or ``special``.

    The default tree asks per-channel int8 first: the outlier share alone never sends a layer to
    fp16 (peaked conv kernels have 10–40% of their values beyond a robust 3σ and still quantize at
    31–46 dB per channel). Below the per-channel floor, many outliers mean fp16, few mean int16.
    The guide's tree (``tree="guide"``) reads the per-tensor SQNR and the outlier share as the
    guide writes them: < 0.1% and > 40 dB int8; ≤ 1% and ≥ 30 dB per-channel int8; ≤ 1% int16;
    more fp16; > 10% special handling.
    """
    from weightlint.config.plans import QUANT_PROFILES

    t = thresholds or QUANT_PROFILES[tree]
    # No SQNR (a constant matrix has no noise: inf; subnormals can give NaN): nothing to lose in int8.
    per_tensor = math.inf if per_tensor is None or math.isnan(per_tensor) else per_tensor
    per_channel = math.inf if per_channel is None or math.isnan(per_channel) else per_channel
    numbers = f"outliers {outliers:.3g}%, SQNR {per_tensor:.1f} dB per tensor, {per_channel:.1f} dB per channel"

    def under(value: float, limit: float | None, strict: bool = True) -> bool:
        """A requirement ``value < limit`` (≤ when not strict); a null limit requires nothing."""
        return limit is None or (value < limit if strict else value <= limit)

    def over(value: float, limit: float | None, strict: bool = True) -> bool:
        """A requirement ``value > limit`` (≥ when not strict); a null limit requires nothing."""
        return limit is None or (value > limit if strict else value >= limit)

    def shown(limit: float | None) -> str:
        return "off" if limit is None else f"{limit:g}"

    if t.special_outliers is not None and outliers > t.special_outliers:
        return "special", f"{numbers}: outliers > {shown(t.special_outliers)}%, needs special handling (keep 16-bit)"
    if tree == "guide":
        if under(outliers, t.int8_max_outliers) and over(per_tensor, t.int8_min_sqnr_db):
            return "int8", f"{numbers}: < {shown(t.int8_max_outliers)}% and > {shown(t.int8_min_sqnr_db)} dB"
        if under(outliers, t.fp16_min_outliers, strict=False) and over(per_tensor, t.per_channel_min_sqnr_db, strict=False):
            return "int8-per-channel", (f"{numbers}: ≤ {shown(t.fp16_min_outliers)}% and "
                                        f"≥ {shown(t.per_channel_min_sqnr_db)} dB")
        if under(outliers, t.fp16_min_outliers, strict=False):
            return "int16", f"{numbers}: ≤ {shown(t.fp16_min_outliers)}% but < {shown(t.per_channel_min_sqnr_db)} dB"
        return "fp16", f"{numbers}: > {shown(t.fp16_min_outliers)}%"
    if not over(per_channel, t.per_channel_min_sqnr_db, strict=False):
        if not under(outliers, t.fp16_min_outliers, strict=False):
            return "fp16", (f"{numbers}: per-channel int8 < {shown(t.per_channel_min_sqnr_db)} dB and "
                            f"> {shown(t.fp16_min_outliers)}% outliers")
        return "int16", (f"{numbers}: per-channel int8 < {shown(t.per_channel_min_sqnr_db)} dB, "
                         f"≤ {shown(t.fp16_min_outliers)}% outliers")
    if over(per_tensor, t.int8_min_sqnr_db, strict=False) and under(outliers, t.int8_max_outliers):
        return "int8", (f"{numbers}: ≥ {shown(t.int8_min_sqnr_db)} dB per tensor and "
                        f"< {shown(t.int8_max_outliers)}% outliers")
    return "int8-per-channel", f"{numbers}: per-channel int8 ≥ {shown(t.per_channel_min_sqnr_db)} dB"


def quantization_group(matrix: Any, norms: dict[str, Any] | None = None,
                       flat: Any | None = None) -> dict[str, Any]:
    """Quantization statistics of a finite matrix (outputs × inputs).

    ``norms`` (l2, max_abs, mean_abs, mean) and ``flat`` (the values in storage order, contiguous)
    are passed in by the shared statistics when known, so nothing is computed twice.
    """
    flat = matrix.reshape(-1) if flat is None else flat
    if norms is None:
        xp = backend_for(flat)
        count = xp.numel(flat)
        low, high = xp.minmax(flat)
        norms = {"l2": xp.sum_squares(flat) ** 0.5, "max_abs": max(-low, high),
                 "mean_abs": xp.sum_abs(flat) / count, "mean": xp.sum(flat) / count}
    share, robust = outlier_share(flat)
    signal = norms["l2"] ** 2
    per_tensor = sqnr_db(matrix, per_channel=False, signal=signal, absmax=norms["max_abs"])
    per_channel = sqnr_db(matrix, per_channel=True, signal=signal)
    return quantization_result(share, robust, per_tensor, per_channel, norms, kurtosis(flat, norms["mean"]))


def quantization_result(share: float, robust: dict[str, Any], per_tensor: float | None, per_channel: float | None,
                        norms: dict[str, Any], kurtosis_value: float | None) -> dict[str, Any]:
    """The group's statistics from its parts (computed whole here, or in row blocks by
    :mod:`weightlint.stats.blocked`)."""
    return {
        "extreme_outlier_percentage": share,
        "outlier_center": robust["center"],
        "outlier_scale": robust["scale"],
        "outlier_scale_method": robust["scale_method"],
        "sqnr_db": per_tensor,
        "sqnr_db_per_channel": per_channel,
        "dynamic_range": norms["max_abs"] / norms["mean_abs"] if norms["mean_abs"] > 0 else None,
        "spike_ratio": robust["spike_ratio"],
        "kurtosis": kurtosis_value,
        "recommended": recommend(share, per_tensor, per_channel),
    }
