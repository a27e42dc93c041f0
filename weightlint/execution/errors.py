"""How a run fails: the user's mistake (exit 4), a plugin's bug (exit 3), or weightlint's own (WL008)."""

from __future__ import annotations

from weightlint.rules import BUILTIN
from weightlint.sources import Problem
from weightlint.sources.base import short_reason


class UsageError(Exception):
    """Bad invocation: exit code 4."""


class RuleError(Exception):
    """A plugin raised while checking: exit code 3 for a third-party plugin, WL008 for a built-in."""

    def __init__(self, plugin: str, where: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed on {where}: {type(error).__name__}: {error}")
        self.original = error
        self.builtin = plugin in BUILTIN


def internal_problem(file: str, error: BaseException, tensor: str | None = None) -> Problem:
    """WL008: weightlint's own code failed on this file or tensor; the run goes on without it."""
    if isinstance(error, MemoryError):
        reason = "out of memory while checking it"
    else:
        reason = f"{type(error).__name__}: {short_reason(error)}"
    return Problem("internal-error", file, f"not checked: weightlint failed ({reason})", tensor=tensor)
