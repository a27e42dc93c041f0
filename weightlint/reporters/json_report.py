"""The JSON report: one document, schema documented in docs/json-report.md."""

from __future__ import annotations

import json
import math
from typing import Any

from weightlint._version import __version__

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def document(report) -> dict[str, Any]:
    return _clean({
        "schema": SCHEMA_VERSION,
        "weightlint": __version__,
        "model": report.model(),
        "summary": report.summary(),
        "rules": [rule.code for rule in report.rules.values()],
        "notes": report.notes,
        "findings": [finding.to_dict() for finding in report.findings],
        "tensors": report.tensors,
    })


def render(report, **_options) -> str:
    return json.dumps(document(report), indent=2, allow_nan=False) + "\n"
