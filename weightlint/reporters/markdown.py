"""A Markdown summary for pull-request comments and ``$GITHUB_STEP_SUMMARY``: verdict, score,
counts and a table of the worst findings (GitHub-flavoured Markdown)."""

from __future__ import annotations

import re

from weightlint._version import __version__
from weightlint.reporters._common import findings_by_severity, printable, relative_path
from weightlint.reporters.text import closing_line, human_count

MAX_ROWS = 50
# Characters that Markdown would read as markup (emphasis, code, strikethrough, a cell's end), and
# "<" where it could open an HTML tag or an autolink.
_MARKDOWN_PUNCTUATION = re.compile(r"[\\`*_|~]|<(?=[A-Za-z/!?])")


def escape_cell(text: str) -> str:
    """Plain text for a table cell: ``|`` would end the cell and a newline the row; Markdown's own
    punctuation (``*``, ``_``, backticks, ``~``, ``<`` before a tag) is backslash-escaped so that it
    prints as typed."""
    text = printable(" ".join(str(text).split()))
    return _MARKDOWN_PUNCTUATION.sub(lambda match: "\\" + match.group(), text)


def _code(text: str) -> str:
    """A code span in a table cell: only ``|`` needs escaping there (GFM tables split cells first)."""
    text = printable(" ".join(str(text).split()))
    if "`" in text:
        return escape_cell(text)
    return "`" + text.replace("|", "\\|") + "`"


def _headline(report) -> list[str]:
    summary = report.summary()
    score = f"**Health score {summary['health_score']}/100: {summary['verdict']}** · exit code {summary['exit_code']}"
    if report.interrupted:
        return ["## ⚠️ weightlint: interrupted", "",
                "The report covers only the tensors checked before the interruption.", "", score]
    if not report.records:
        return ["## ⚠️ weightlint: no tensors found", "", f"exit code {summary['exit_code']}"]
    failing = sum(finding.severity >= report.config.fail_on for finding in report.findings)
    if failing:
        # The build gate decides the headline: a "good" score with one error still fails the job.
        title = f"❌ weightlint failed: {failing} finding{'s' if failing != 1 else ''} at or above {summary['fail_on']}"
    else:
        icon = "✅" if summary["verdict"] in ("deploy", "good: deploy") else "⚠️"
        title = f"{icon} weightlint passed: nothing at or above {summary['fail_on']}"
    return [f"## {title}", "", score]


def _counts(report) -> list[str]:
    counts = report.counts()
    files = sorted({f for source in report.sources for f in source.files})
    return [
        "| errors | warnings | info | tensors | parameters | files |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {counts['error']} | {counts['warning']} | {counts['info']} | {len(report.records)} "
        f"| {human_count(report.parameter_count)} | {len(files)} |",
    ]


def _table(report, max_rows: int) -> list[str]:
    ordered = findings_by_severity(report.findings)
    if not ordered:
        return ["No findings."]
    lines = ["| severity | rule | tensor | file | message |", "|---|---|---|---|---|"]
    for finding in ordered[:max_rows]:
        lines.append(" ".join([
            "|", escape_cell(str(finding.severity)),
            "|", escape_cell(f"{finding.code} {finding.rule}"),
            "|", _code(finding.tensor) if finding.tensor else "",
            "|", _code(relative_path(finding.file)) if finding.file else "",
            "|", escape_cell(finding.message), "|",
        ]))
    if len(ordered) > max_rows:
        more = len(ordered) - max_rows
        lines += ["", f"… and {more} more finding{'s' if more != 1 else ''} (see the full report)."]
    return lines


def render(report, max_rows: int = MAX_ROWS, **_options) -> str:
    lines = [*_headline(report), "", *_counts(report), ""]
    if report.findings:
        shown = min(len(report.findings), max_rows)
        lines += [f"### Worst findings ({shown} of {len(report.findings)})", ""]
    lines += [*_table(report, max_rows), ""]
    if report.notes:
        lines += ["### Notes", "", *(f"- {escape_cell(note)}" for note in report.notes), ""]
    lines.append(f"<sub>weightlint {__version__} · {closing_line(report)} · "
                 f"paths: {escape_cell(' '.join(report.paths))}</sub>")
    return "\n".join(lines) + "\n"
