"""Baselines: record today's findings, later report only new ones.

A finding is matched by rule code, file *name* (not path, so a checkout elsewhere matches) and
tensor — never by its measured value, so small numeric drifts do not churn the baseline.
"""

from __future__ import annotations

import json
import os

BASELINE_SCHEMA = 1


def finding_key(finding) -> tuple[str, str, str]:
    file = os.path.basename((finding.file or "").replace("\\", "/"))
    return (finding.code, file, finding.tensor or "")


def write_baseline(path: str, findings) -> int:
    entries = sorted({finding_key(f) for f in findings})
    document = {"weightlint_baseline": BASELINE_SCHEMA,
                "findings": [{"code": code, "file": file, "tensor": tensor} for code, file, tensor in entries]}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    return len(entries)


class BaselineError(Exception):
    """A baseline file that cannot be read: a usage error."""


def read_baseline(path: str) -> set[tuple[str, str, str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        return {(e["code"], e["file"], e["tensor"]) for e in document["findings"]}
    except OSError as error:
        raise BaselineError(f"{path}: cannot read the baseline: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise BaselineError(f"{path}: not a weightlint baseline ({error})") from None
