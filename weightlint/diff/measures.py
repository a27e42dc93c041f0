"""How the WL7xx rules read a pair's change (light: the rules import it when plugins load)."""

from __future__ import annotations

from typing import Any


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
