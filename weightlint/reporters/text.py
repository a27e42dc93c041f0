"""Text output in the pytest manner: a header, findings grouped by tensor, a closing line."""

from __future__ import annotations

import shutil
from itertools import groupby

from weightlint._version import __version__
from weightlint.finding import Severity
from weightlint.reporters._common import printable

_COLORS = {Severity.ERROR: "31;1", Severity.WARNING: "33;1", Severity.INFO: "36"}


def human_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _kept_out(report) -> str:
    """One line on what the configuration kept out of the report, and where to see it."""
    parts = []
    if report.suppressed:
        parts.append(f"{len(report.suppressed)} suppressed by the configuration ({report.config.source})")
    if report.baselined:
        parts.append(f"{len(report.baselined)} already in the baseline {report.config.baseline}")
    if report.baseline_fixed:
        parts.append(f"{report.baseline_fixed} baseline finding{'s' if report.baseline_fixed != 1 else ''} "
                     "no longer found")
    return "not shown: " + "; ".join(parts) + " (--format json lists them)"


def closing_line(report) -> str:
    counts = report.counts()
    words = {"error": "errors", "warning": "warnings", "info": "info"}
    parts = [f"{n} {word if n == 1 else words[word]}" for word, n in counts.items() if n]
    text = ", ".join(parts) if parts else "no findings" if report.records else "no tensors checked"
    # As pytest says "3 deselected": what the configuration kept out of the report is never silent.
    if report.suppressed:
        text += f", {len(report.suppressed)} suppressed"
    if report.baselined:
        text += f", {len(report.baselined)} baselined"
    if report.interrupted:
        text = "interrupted: " + text
    return f"{text} in {report.seconds:.1f}s"


class _Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text


def _rule_line(title: str, width: int, paint, code: str = "1") -> str:
    title = f" {title} "
    left = max((width - len(title)) // 2, 3)
    right = max(width - len(title) - left, 3)
    return paint("=" * left + title + "=" * right, code)


def _engine(device: str) -> str:
    """What computed the statistics: NumPy on the CPU, PyTorch on a GPU (and for pickles)."""
    import sys

    import numpy

    torch = sys.modules.get("torch")
    parts = [f"numpy {numpy.__version__}"]
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def render(report, color: bool = False, verbose: bool = False, quiet: bool = False, **_options) -> str:
    paint = _Painter(color)
    width = min(shutil.get_terminal_size((88, 20)).columns, 100)
    lines: list[str] = []
    if not quiet:
        lines.append(_rule_line("weightlint session starts", width, paint))
        lines.append(f"weightlint {__version__}, {_engine(report.device)}, device {report.device}")
        if report.compared:
            lines.append(f"diff: {printable(' '.join(report.compared['old']))} → "
                         f"{printable(' '.join(report.compared['new']))}")
        else:
            lines.append(f"paths: {printable(' '.join(report.paths))}")
        files = sorted({f for source in report.sources for f in source.files})
        lines.append(
            f"checkpoint: {', '.join(report.formats) or 'none'}, {len(report.records)} tensors, "
            f"{human_count(report.parameter_count)} parameters, {len(files)} file{'s' if len(files) != 1 else ''}"
        )
        selected, applicable = report.selected_rules, report.applicable_rules
        of_all = f" of {len(applicable)}" if len(selected) != len(applicable) else ""
        lines.append(f"rules: {len(selected)}{of_all} ({' '.join(selected)})")
        lines.extend(f"note: {printable(note)}" for note in report.notes)
        lines.append("")
    by_file = groupby(report.findings, key=lambda f: f.file or "")
    for file, file_findings in by_file:
        lines.append(paint(printable(file) if file else "<no file>", "1"))
        for tensor, tensor_findings in groupby(file_findings, key=lambda f: f.tensor):
            indent = "  "
            if tensor:
                lines.append(f"  {printable(tensor)}")
                indent = "    "
            for finding in tensor_findings:
                severity = paint(f"{str(finding.severity):<7}", _COLORS[finding.severity])
                lines.append(f"{indent}{finding.code} {severity} {finding.rule}: {printable(finding.message)}")
    if verbose and not quiet:
        flagged = {(f.file, f.tensor) for f in report.findings}
        clean = [r for r in report.records if (r.file, r.name) not in flagged]
        if clean:
            lines += ["", paint("tensors without findings", "1")]
            lines += [f"  {printable(r.name)} {list(r.shape)} {r.dtype_name}" + ("" if r.is_judged else " (not judged)")
                      for r in clean]
    if report.findings:
        lines.append("")
    if report.records and not report.interrupted:
        lines.append(f"health score {report.health_score}/100: {report.verdict}")
    if report.suppressed or report.baselined or report.baseline_fixed:
        lines.append(_kept_out(report))
    worst = max((f.severity for f in report.findings), default=None)
    code = {Severity.ERROR: "31;1", Severity.WARNING: "33;1", Severity.INFO: "32;1", None: "32;1"}[worst]
    lines.append(_rule_line(closing_line(report), width, paint, code))
    return "\n".join(lines) + "\n"
