"""Run settings: what to select, thresholds, severities, device. Loaded from CLI (and YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlint.finding import Severity
from weightlint.rule import Rule


def specificity(selector: str) -> int:
    """How specific a selector is: ALL < a code prefix (by length) < a full code or a rule name."""
    selector = selector.strip().upper()
    if selector == "ALL":
        return 0
    return len(selector) if selector.startswith("WL") else 5


def selector_matches(selector: str, rule: Rule) -> bool:
    """``ALL``, a code prefix (``WL1``, ``WL101``) or a rule name (``non-finite``)."""
    selector = selector.strip()
    if selector.upper() == "ALL":
        return True
    if selector.upper().startswith("WL"):
        return rule.code.startswith(selector.upper())
    return selector.lower() == rule.name


@dataclass
class Config:
    fail_on: Severity = Severity.ERROR
    device: str = "auto"
    select: list[str] = field(default_factory=lambda: ["ALL"])
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    exit_zero: bool = False

    def is_selected(self, rule: Rule) -> bool:
        """Most specific selector wins, as in ruff; ties go to ``ignore``."""
        best_select = max((specificity(s) for s in self.select + self.extend_select if selector_matches(s, rule)),
                          default=-1)
        best_ignore = max((specificity(s) for s in self.ignore if selector_matches(s, rule)), default=-1)
        return best_select >= 0 and best_select > best_ignore

    def rule_options(self, rule: Rule) -> dict[str, Any]:
        options = dict(rule.thresholds)
        for key, value in self.rules.get(rule.code, {}).items():
            if key != "severity":
                options[key] = value
        return options


@dataclass
class CheckContext:
    """What a rule may ask of the run: its options (None when deselected) and the device."""

    config: Config
    rules: dict[str, Rule]
    device: str

    def __post_init__(self) -> None:
        self._options = {
            code: self.config.rule_options(rule) if self.config.is_selected(rule) else None
            for code, rule in self.rules.items()
        }

    def options(self, rule: Rule) -> dict[str, Any] | None:
        return self._options.get(rule.code)
