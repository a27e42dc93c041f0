"""SARIF 2.1.0, for GitHub code scanning and other static-analysis dashboards.

Checkpoints are binary: they have no lines, so every result points at line 1 of its file and
names the tensor in a logical location (``file::tensor``). See docs/ci-integration.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from weightlint._version import __version__
from weightlint.finding import Finding, json_safe
from weightlint.reporters._common import (
    SARIF_LEVELS,
    in_memory_labels,
    relative_path,
    rules_run,
    unicode_safe_tree,
)
from weightlint.rule import Rule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/weightlint/"
SOURCE_ROOT = "%SRCROOT%"
FINGERPRINT = "weightlint/v1"


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    documentation = rule.documentation()
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.what_it_does.strip()},
        "help": {"text": documentation, "markdown": documentation},
        "defaultConfiguration": {"level": SARIF_LEVELS[rule.severity]},
        "properties": {"tags": ["weights"], "applies_to": rule.applies_to, "thresholds": json_safe(dict(rule.thresholds))},
    }


def artifact_location(file: str) -> dict[str, Any]:
    """Relative to the working directory (``%SRCROOT%``) when inside it, a ``file://`` URI otherwise."""
    path = relative_path(file)
    if os.path.isabs(path):
        return {"uri": Path(path).as_uri()}
    return {"uri": quote(os.fsencode(path)), "uriBaseId": SOURCE_ROOT}  # bytes: a non-UTF-8 name is %-escaped


def fingerprint(finding: Finding) -> str:
    """Stable across runs and machines: rule, file (as shown in the SARIF) and tensor."""
    file = relative_path(finding.file) if finding.file else ""
    key = "\x00".join((finding.code, file, finding.tensor or ""))
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _result(finding: Finding, rule_index: dict[str, int], in_memory: set[str]) -> dict[str, Any]:
    text = f"{finding.tensor}: {finding.message}" if finding.tensor else finding.message
    location: dict[str, Any] = {}
    if finding.file and finding.file not in in_memory:
        location["physicalLocation"] = {"artifactLocation": artifact_location(finding.file),
                                        "region": {"startLine": 1}}
    if finding.tensor:
        shown = relative_path(finding.file) if finding.file and finding.file not in in_memory else finding.file
        qualified = f"{shown}::{finding.tensor}" if shown else finding.tensor
        location["logicalLocations"] = [{"name": finding.tensor, "kind": "member", "fullyQualifiedName": qualified}]
    return {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": SARIF_LEVELS[finding.severity],
        "message": {"text": text},
        "locations": [location] if location else [],
        "partialFingerprints": {FINGERPRINT: fingerprint(finding)},
        "properties": json_safe({
            "rule": finding.rule,
            "severity": str(finding.severity),
            "tensor": finding.tensor,
            "value": finding.value,
            "threshold": finding.threshold,
            **({"location": finding.location} if finding.location else {}),
            **({"extra": finding.extra} if finding.extra else {}),
        }),
    }


def _accepted(report, rule_index: dict[str, int], in_memory: set[str]) -> list[dict[str, Any]]:
    """Findings a suppression or the baseline accepted, as results with SARIF ``suppressions``:
    viewers list them as suppressed (and code scanning as dismissed) instead of not at all."""
    accepted = []
    reasons = list(getattr(report, "suppression_reasons", []))
    for position, finding in enumerate(report.suppressed):
        reason = reasons[position] if position < len(reasons) else "suppressed in the configuration"
        accepted.append((finding, f"suppressed: {reason}"))
    baseline = getattr(report.config, "baseline", None)
    accepted += [(finding, f"in the baseline {baseline}") for finding in report.baselined]
    results = []
    for finding, justification in accepted:
        result = _result(finding, rule_index, in_memory)
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": justification}]
        results.append(result)
    return results


def document(report) -> dict[str, Any]:
    rules = rules_run(report)
    known = {rule.code for rule in rules}
    # A finding of a rule the report does not list (a plugin that reports under a foreign code) still
    # needs a descriptor for its ruleIndex.
    for finding in [*report.findings, *report.suppressed, *report.baselined]:
        if finding.code not in known:
            known.add(finding.code)
            rules.append(report.rules.get(finding.code) or Rule(
                code=finding.code, name=finding.rule, severity=finding.severity, summary=finding.rule,
                applies_to="unknown", what_it_does=finding.rule, why_bad="", how_to_fix=""))
    rule_index = {rule.code: position for position, rule in enumerate(rules)}
    in_memory = in_memory_labels(report)
    summary = report.summary()
    invocation: dict[str, Any] = {
        "executionSuccessful": not report.interrupted,
        "exitCode": summary["exit_code"],
        "toolExecutionNotifications": [{"level": "note", "message": {"text": note}} for note in report.notes],
    }
    if report.interrupted:
        invocation["toolExecutionNotifications"].append(
            {"level": "warning", "message": {"text": "interrupted: the report covers the tensors checked so far"}})
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {
                "name": "weightlint",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule_descriptor(rule) for rule in rules],
            }},
            "originalUriBaseIds": {SOURCE_ROOT: {"uri": Path.cwd().as_uri().rstrip("/") + "/"}},
            "invocations": [invocation],
            "results": [_result(finding, rule_index, in_memory) for finding in report.findings]
                       + _accepted(report, rule_index, in_memory),
            "properties": {"summary": json_safe(summary)},
        }],
    }


def render(report, **_options) -> str:
    return json.dumps(unicode_safe_tree(document(report)), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
