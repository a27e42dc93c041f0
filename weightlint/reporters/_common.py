"""What the CI reporters share: which rules ran, which (rule, tensor) pairs were checked, paths.

Nothing here measures anything: it arranges the report's own data (its rules, its configuration,
its records and findings) into the shape the reporters print.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from weightlint.finding import Finding, Severity
from weightlint.rule import Rule

# Severity words of SARIF (result.level, defaultConfiguration.level) and GitHub workflow commands.
SARIF_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
GITHUB_COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
IN_MEMORY_FORMATS = ("module", "state-dict")
# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: a tensor or
# file name holding them could start a new line or repaint the terminal in a report.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def unicode_safe(text: object) -> str:
    """``text`` with the bytes of a file name that is not valid UTF-8 (Python keeps them as lone
    surrogates, which no encoder writes) shown as ``\\xff`` escapes."""
    text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def unicode_safe_tree(value: Any) -> Any:
    """A JSON document with ``unicode_safe`` applied to every string (keys included), bytes decoded."""
    if isinstance(value, str):
        return unicode_safe(value)
    if isinstance(value, bytes):  # a protobuf string field that is not valid UTF-8
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {unicode_safe_tree(key): unicode_safe_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [unicode_safe_tree(item) for item in value]
    return value


def printable(text: object, keep: str = "") -> str:
    """``text`` with every control character but those in ``keep`` shown as its escape (``\\n``,
    ``\\x1b``), so a name from a checkpoint can never forge a line of the report or send terminal
    escapes, and with invalid UTF-8 escaped (see ``unicode_safe``). (GitHub's workflow commands keep
    CR and LF: they percent-encode them.)"""
    return _CONTROL.sub(lambda match: match.group() if match.group() in keep
                        else match.group().encode("unicode_escape").decode("ascii"), unicode_safe(text))


def is_file_rule(rule: Rule) -> bool:
    return rule.scope == "file"


def is_tensor_rule(rule: Rule) -> bool:
    return rule.scope in ("tensor", "matrix")


def applies(rule: Rule, record) -> bool:
    """Whether a tensor rule judges this record, from the rule's declared ``scope``: matrix rules
    judge weight matrices, tensor rules every judged tensor (floating point, not a buffer, not
    empty). A finding on a tensor outside this predicate is still reported: it adds its own case."""
    if not is_tensor_rule(rule) or not record.is_judged:
        return False
    return record.is_matrix if rule.scope == "matrix" else True


def _context(report):
    """The run's own answer to "is this rule on for this tensor?" (selection and per-tensor overrides)."""
    from weightlint.config import CheckContext

    return CheckContext(report.config, report.rules, report.device)


def rules_run(report) -> list[Rule]:
    """Every rule that ran: selected by the configuration (for some tensor), in the report's order."""
    context = _context(report)
    return [rule for rule in report.rules.values() if context.active(rule)]


def _checked_records(report) -> list:
    """Records whose statistics were computed: judged, readable, and reached before an interruption.

    Every judged tensor that was checked has the ``finite`` group in the report (docs/json-report.md).
    """
    def entry(record) -> dict:
        plain = report.tensors.get(record.name, {})
        return plain if plain.get("file") == record.file else report.tensors.get(f"{record.file}::{record.name}", {})

    return [record for record in report.records if record.is_judged and "finite" in entry(record)]


@dataclass(frozen=True)
class _FileOnly:
    """A file without a tensor, as file-level rules see one (a Problem has the same two fields)."""

    file: str
    tensor: None = None


@dataclass
class Case:
    """One (rule, tensor) pair, or (rule, file) for file-level rules, with the findings about it."""

    code: str
    rule: str
    file: str | None
    tensor: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.code} {self.rule}"


@dataclass
class Suite:
    """One checkpoint source (a file, or a shard index with its shards) and its cases."""

    name: str
    format: str
    files: list[str]
    cases: list[Case] = field(default_factory=list)


class _Suites:
    """Builds the suites: sources first, then checked pairs, then findings into their cases."""

    def __init__(self, report) -> None:
        self.report = report
        self.context = _context(report)
        self.by_name: dict[str, Suite] = {}
        self.by_file: dict[str, Suite] = {}
        self.cases: dict[tuple, Case] = {}

    def suite_for(self, name: str, fmt: str, files: list[str]) -> Suite:
        suite = self.by_name.setdefault(name, Suite(name, fmt, files))
        for file in files:
            self.by_file.setdefault(file, suite)
        return suite

    def add(self, suite: Suite, case: Case) -> Case:
        key = (case.code, case.file, case.tensor)
        if key not in self.cases:
            self.cases[key] = case
            suite.cases.append(case)
        return self.cases[key]

    def add_checked(self, rules: list[Rule]) -> None:
        file_rules = [rule for rule in rules if is_file_rule(rule)]
        tensor_rules = [rule for rule in rules if is_tensor_rule(rule)]
        for source in self.report.sources:
            files = list(dict.fromkeys([source.path, *source.files]))
            suite = self.suite_for(source.path, source.format, files)
            if source.format in IN_MEMORY_FORMATS:
                continue
            for file, rule in ((file, rule) for file in files for rule in file_rules):
                if self.context.options(rule, _FileOnly(file)) is not None:
                    self.add(suite, Case(rule.code, rule.name, file, None))
        for record in _checked_records(self.report):
            suite = (self.by_name.get(record.metadata.get("source")) or self.by_file.get(record.file)
                     or self.suite_for(record.file, record.format, [record.file]))
            for rule in tensor_rules:
                if applies(rule, record) and self.context.options(rule, record) is not None:
                    self.add(suite, Case(rule.code, rule.name, record.file, record.name))

    def add_finding(self, finding: Finding) -> None:
        name = finding.file or "<no file>"
        suite = self.by_file.get(name) or self.suite_for(name, "other", [name])
        case = self.add(suite, Case(finding.code, finding.rule, finding.file, finding.tensor))
        if case.findings:  # a second finding of the same rule on the same pair: its own case
            case = Case(finding.code, finding.rule, finding.file, finding.tensor)
            suite.cases.append(case)
        case.findings.append(finding)


def suites(report) -> list[Suite]:
    """The report as test suites: one per source, one case per checked (rule, tensor) pair.

    File-integrity rules give one case per file of the source (the shard index included). A finding
    whose pair is not among the checked ones (a file-level finding about one tensor, a finding on a
    tensor outside the rule's declared scope) adds its own case, so that every finding appears in
    exactly one case of exactly one suite. When a rule reports several findings on one pair, each
    finding is its own case.
    """
    builder = _Suites(report)
    builder.add_checked(rules_run(report))
    for finding in report.findings:
        builder.add_finding(finding)
    return list(builder.by_name.values())


def relative_path(file: str) -> str:
    """A checkpoint path as CI tools want it: relative to the working directory, with forward
    slashes; absolute (still forward slashes) when the file lies outside the working directory."""
    absolute = os.path.abspath(file)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        relative = absolute
    if relative == ".." or relative.startswith(".." + os.sep):
        relative = absolute
    return relative.replace(os.sep, "/")


def in_memory_labels(report) -> set[str]:
    """The labels of in-memory sources (``<Sequential>``): not files, so no file location."""
    return {source.path for source in report.sources if source.format in IN_MEMORY_FORMATS}


def is_at_or_above(finding: Finding, report) -> bool:
    return finding.severity >= report.config.fail_on


def findings_by_severity(findings: list[Finding]) -> list[Finding]:
    """Worst first, then by rule code, then where (file, tensor)."""
    return sorted(findings, key=lambda f: (-int(f.severity), f.code, f.file or "", f.tensor or ""))

