"""The JSON report: one document, schema documented in docs/json-report.md."""

from __future__ import annotations

import json
from typing import Any

from weightlint._version import __version__
from weightlint.finding import json_safe
from weightlint.reporters._common import unicode_safe_tree

SCHEMA_VERSION = 2


def document(report) -> dict[str, Any]:
    return json_safe({
        "schema": SCHEMA_VERSION,
        "weightlint": __version__,
        "model": report.model(),
        "summary": report.summary(),
        "rules": report.selected_rules,
        "notes": report.notes,
        "findings": [finding.to_dict() for finding in report.findings],
        "tensors": report.tensors,
        **({"adapters": report.adapters} if report.adapters else {}),
        **({"steps": report.steps} if report.steps else {}),
        **({"plans": {name: plan.to_json() for name, plan in report.plans.items()}} if report.plans else {}),
        "suppressed": [{**finding.to_dict(), "suppressed_by": reason}
                       for finding, reason in zip(report.suppressed, report.suppression_reasons)],
        "baselined": [finding.to_dict() for finding in report.baselined],
    })


def render(report, **_options) -> str:
    return json.dumps(unicode_safe_tree(document(report)), indent=2, allow_nan=False) + "\n"
