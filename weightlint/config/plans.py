"""The thresholds of ``weightlint plan quant``: the ``plan: quant:`` table of the configuration.

The low-rank plan's bound is WL401's ``max_relative_error`` (``rules: {WL401: {…}}``), so the plan
and the rule's advice always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class QuantThresholds:
    """Outlier shares in percent of a matrix's values beyond a robust 3σ; SQNR in dB (int8)."""

    int8_min_sqnr_db: float = 40.0        # per-tensor SQNR for int8 per-tensor
    int8_max_outliers: float = 0.1        # and at most this share of outliers
    per_channel_min_sqnr_db: float = 30.0  # per-channel int8 needs this (default tree: per-channel SQNR)
    fp16_min_outliers: float = 1.0        # below the int8 floor: fp16 above this share, int16 under it
    special_outliers: float | None = None  # severe, special handling (the guide's 10 %)


QUANT_NAMES = tuple(field.name for field in fields(QuantThresholds))
QUANT_PROFILES = {"default": QuantThresholds(), "guide": QuantThresholds(special_outliers=10.0)}


def quant_thresholds(profile: str, table: dict[str, Any] | None) -> QuantThresholds:
    """The profile's thresholds with the configuration's ``plan: quant:`` values over them."""
    return replace(QUANT_PROFILES.get(profile, QuantThresholds()), **(table or {}))
