"""Numbers in messages: readable and exact enough to act on."""

from __future__ import annotations

import math
import re

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str | None) -> tuple:
    """Sort key that orders the numbers inside names by value: ``blk.2`` before ``blk.10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text or ""))


def number(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    magnitude = abs(value)
    if magnitude >= 1e7 or (0 < magnitude < 1e-3):
        return f"{value:.3g}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.3g}" if magnitude < 1 else f"{value:.4g}"


def indices(values: list[int], listed: int) -> str:
    shown = ", ".join(str(i) for i in values[:listed])
    return shown + (f", … ({len(values) - listed} more)" if len(values) > listed else "")
