"""Findings and severities: plain data, produced by rules and consumed by reporters."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from weightlint.formatting import natural_key


class Severity(enum.IntEnum):
    """How bad a finding is. Ordered, so ``severity >= Severity.WARNING`` works."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: "str | Severity") -> "Severity":
        if isinstance(text, Severity):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected info, warning or error)") from None

    def __str__(self) -> str:
        return self.name.lower()


def json_safe(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as the strings "nan", "inf", "-inf", at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


@dataclass
class Finding:
    """One problem a rule found in one tensor (or one file)."""

    code: str
    rule: str
    severity: Severity
    message: str
    file: str | None = None
    tensor: str | None = None
    value: float | int | None = None
    threshold: float | int | None = None
    location: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "rule": self.rule,
            "severity": str(self.severity),
            "file": self.file,
            "tensor": self.tensor,
            "message": self.message,
            "value": json_safe(self.value),
            "threshold": json_safe(self.threshold),
            "location": self.location,
            **({"extra": self.extra} if self.extra else {}),
        }

    @property
    def sort_key(self) -> tuple:
        return (natural_key(self.file), natural_key(self.tensor), -int(self.severity), self.code)
