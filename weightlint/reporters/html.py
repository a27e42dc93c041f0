"""The HTML report: one self-contained page (styles, script and SVG plots inline; a
Content-Security-Policy that allows nothing from outside the page).

Verdict and counts; a heat map of worst severity by role and depth; depth plots of the spectral and
quantization statistics; for each flagged tensor its spectrum and histogram beside a healthy
sibling's; a sortable, filterable table of every tensor; every finding with its rule's
documentation. Every name comes from an untrusted file and is escaped. Plots need matplotlib
(``pip install weightlint[html]``); without it the page keeps its tables and says so.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any

from weightlint._version import __version__
from weightlint.finding import Severity
from weightlint.formatting import number
from weightlint.reporters import html_plots

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
MAX_TENSOR_PLOTS = 10
# Depth plots: (title, statistics group, key, log scale).
DEPTH_METRICS = (("condition number (log)", "spectral", "condition_number", True),
                 ("stable-rank ratio", "spectral", "stable_rank_ratio", False),
                 ("int8 SQNR per channel (dB)", "quantization", "sqnr_db_per_channel", False),
                 ("L2 norm", "norms", "l2", False),
                 ("power-law α", "spectral", "alpha", False))
# A diff's depth plots and columns: how each tensor changed.
DIFF_METRICS = (("norm ratio ‖NEW‖/‖OLD‖", "diff", "l2_norm_ratio", False),
                ("relative change ‖NEW−OLD‖/‖OLD‖ (log)", "diff", "relative_change", True))
DIFF_COLUMNS = (("norm ratio", "diff", "l2_norm_ratio"), ("relative change", "diff", "relative_change"),
                ("cosine", "diff", "cosine"), ("condition ratio", "diff", "condition_number_ratio"))
COLUMNS = (("L2 norm", "norms", "l2"), ("condition", "spectral", "condition_number"),
           ("stable-rank ratio", "spectral", "stable_rank_ratio"), ("α", "spectral", "alpha"),
           ("SQNR/ch dB", "quantization", "sqnr_db_per_channel"), ("outliers %", "quantization", "extreme_outlier_percentage"))
# Statistics the page draws: the CLI asks the session for them when an HTML report is written.
GROUPS = ("spectral", "quantization", "sketch")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 1.5em;color:#1d1d1f}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .5em;border-bottom:1px solid #ddd}
.verdict{display:flex;gap:1.2em;align-items:baseline;flex-wrap:wrap}.score{font-size:2.2em;font-weight:700}
.badge{padding:.1em .5em;border-radius:.4em;color:#fff;font-weight:600}.error{background:#c62828}.warning{background:#ef8f00}
.info{background:#1e6fd9}.badge.none{background:#9e9e9e}.muted{color:#666}
table{border-collapse:collapse;font-size:12px}td,th{padding:.2em .45em;border:1px solid #e2e2e2;text-align:right}
th{background:#f5f5f7;cursor:pointer;user-select:none}td.name,th.name{text-align:left;word-break:break-all}
.heat td{width:1.6em;height:1.3em;padding:0;border:1px solid #fff}.heat th{font-weight:400;cursor:default}
.heat td.none{background:#a5d6a7}.heat td.info{background:#90caf9}.heat td.warning{background:#ffcc80}.heat td.error{background:#ef9a9a}
.heat td.empty{background:#fafafa}.plots{display:flex;flex-wrap:wrap;gap:.5em}.plots svg{max-width:100%;height:auto}
details{margin:.3em 0}summary{cursor:pointer}pre{white-space:pre-wrap;background:#f7f7f9;padding:.5em;font-size:12px}
.finding{border-left:4px solid #ccc;padding:.2em .6em;margin:.4em 0}.finding.error{border-color:#c62828;background:none}
.finding.warning{border-color:#ef8f00;background:none}.finding.info{border-color:#1e6fd9;background:none}
input#filter{width:20em;padding:.3em;margin:.3em 0}.note{background:#fff8e1;padding:.4em .7em;border-radius:.3em}
@media print{th{cursor:auto}input#filter,.noprint{display:none}details{display:block}body{max-width:none}}
"""

SCRIPT = """
document.querySelectorAll('table.sortable thead th').forEach(function(th){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0], column = th.cellIndex;
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute('data-order') !== 'asc';
    table.querySelectorAll('th').forEach(function(other){ other.removeAttribute('data-order'); });
    th.setAttribute('data-order', ascending ? 'asc' : 'desc');
    rows.sort(function(a, b){
      var x = a.cells[column].getAttribute('data-value'), y = b.cells[column].getAttribute('data-value');
      var nx = parseFloat(x), ny = parseFloat(y);
      var result = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return ascending ? result : -result;
    });
    rows.forEach(function(row){ body.appendChild(row); });
  });
});
var filter = document.getElementById('filter');
if (filter) filter.addEventListener('input', function(){
  var needle = filter.value.toLowerCase();
  document.querySelectorAll('#tensors tbody tr').forEach(function(row){
    row.style.display = row.textContent.toLowerCase().indexOf(needle) >= 0 ? '' : 'none';
  });
});
"""


def render(report, **_options) -> str:
    findings_by_tensor: dict[str, list] = defaultdict(list)
    for finding in report.findings:
        if finding.tensor:
            findings_by_tensor[finding.tensor].append(finding)
    parts = [_header(report), _heat_map(report, findings_by_tensor)]
    if not html_plots.available():
        parts.append('<p class="note">Plots need matplotlib: <code>pip install "weightlint[html]"</code>. '
                     "The tables below are complete without it.</p>")
    parts += [_depth_plots(report), _steps(report), _tensor_plots(report, findings_by_tensor),
              _findings(report), _table(report, findings_by_tensor), _notes(report)]
    title = "weightlint report: " + ", ".join(report.paths)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            + "".join(part for part in parts if part)
            + f"<script>{SCRIPT}</script></body></html>\n")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    """A statistic as the text report writes it (anything that is not a number as itself)."""
    return number(value) if value is None or isinstance(value, (int, float)) else str(value)


def _worst(findings) -> str | None:
    return str(max(f.severity for f in findings)) if findings else None


def _header(report) -> str:
    counts = report.counts()
    badges = " ".join(f'<span class="badge {name if count else "none"}">{count} {name}</span>'
                      for name, count in counts.items())
    mode = "diff" if report.mode == "diff" else "check"
    compared = ""
    if report.compared:
        compared = (f"<div class=\"muted\">compared: {_e(', '.join(report.compared['old']))} → "
                    f"{_e(', '.join(report.compared['new']))}</div>")
    return (f"<h1>weightlint {mode} report</h1><div class=\"muted\">{_e(', '.join(report.paths))}</div>{compared}"
            f"<div class=\"verdict\"><span class=\"score\">{report.health_score}/100</span>"
            f"<strong>{_e(report.verdict)}</strong> {badges}</div>"
            f"<div class=\"muted\">{len(report.records):,} tensors, {report.parameter_count:,} parameters, "
            f"{_e(', '.join(sorted(set(report.formats))))}; profile {_e(report.config.profile)}; "
            f"weightlint {_e(__version__)}, {report.seconds:.1f} s</div>")


def _placed(report):
    """(role, depth, tensor name) of each tensor with a number in its name (a stacked layer)."""
    from weightlint.roles import stack_role

    for name in report.tensors:
        found = stack_role(name)
        if found and found[1]:
            yield _role_label(found[0]), found[1][-1], name


def _role_label(pattern: str) -> str:
    """``encoder.layer.*.attention.self.query.weight`` → ``attention.self.query.weight``."""
    return pattern.rsplit("*.", 1)[-1] if "*." in pattern else pattern


def _heat_map(report, findings_by_tensor) -> str:
    cells: dict[str, dict[int, str]] = defaultdict(dict)
    depths: set[int] = set()
    for role, depth, name in _placed(report):
        if len(report.tensors[name].get("shape", ())) < 2:
            continue
        cells[role][depth] = name
        depths.add(depth)
    if not cells:
        return ""
    columns = sorted(depths)
    rows = []
    for role in sorted(cells):
        row = [f'<th class="name">{_e(role)}</th>']
        for depth in columns:
            name = cells[role].get(depth)
            if name is None:
                row.append('<td class="empty"></td>')
                continue
            findings = findings_by_tensor.get(name, [])
            worst = _worst(findings) or "none"
            entry = report.tensors[name]
            tip = [name] + [f"{label}: {_number(entry.get(group, {}).get(key))}" for label, group, key in _columns(report)]
            tip += [f"{f.code} {f.severity}: {f.message}" for f in findings]
            row.append(f'<td class="{worst}" title="{_e(chr(10).join(tip))}"></td>')
        rows.append("<tr>" + "".join(row) + "</tr>")
    head = "<tr><th></th>" + "".join(f"<th>{depth}</th>" for depth in columns) + "</tr>"
    return ("<h2>Where the trouble sits</h2><p class=\"muted\">Rows: roles; columns: depth; colour: the worst "
            "finding (green none, blue info, amber warning, red error). Hover a cell for its numbers.</p>"
            f'<table class="heat" id="heatmap">{head}{"".join(rows)}</table>')


def _columns(report):
    return DIFF_COLUMNS if report.mode == "diff" else COLUMNS


def _depth_plots(report) -> str:
    plots = []
    for title, group, key, log in (DIFF_METRICS if report.mode == "diff" else DEPTH_METRICS):
        series: dict[str, list] = defaultdict(list)
        for role, depth, name in _placed(report):
            if len(report.tensors[name].get("shape", ())) < 2:
                continue  # weight matrices only: biases and norm scales have other scales
            value = report.tensors[name].get(group, {}).get(key)
            if isinstance(value, (int, float)) and value is not None:
                series[role].append((depth, float(value)))
        series = {role: points for role, points in series.items() if len(points) > 1}
        if len(series) > 8:  # the eight roles with most layers keep the plot readable
            series = dict(sorted(series.items(), key=lambda item: -len(item[1]))[:8])
        svg = html_plots.depth_plot(title, series, log=log)
        if svg:
            plots.append(f'<div class="plot">{svg}</div>')
    return f'<h2>Across depth</h2><div class="plots">{"".join(plots)}</div>' if plots else ""


def _steps(report) -> str:
    if not report.steps:
        return ""
    series: dict[str, list] = defaultdict(list)
    for step in report.steps:
        for group, ratio in step["groups"].items():
            series[group].append((step["step"], ratio))
    svg = html_plots.step_plot(dict(series))
    rows = "".join(f'<tr><td class="name" data-value="{_e(step["checkpoint"])}">{_e(step["checkpoint"])}</td>'
                   f'<td data-value="{step["step"]}">{step["step"]}</td>'
                   + "".join(f'<td data-value="{_e(step["groups"].get(group, ""))}">{_number(step["groups"].get(group))}</td>'
                             for group in series) + "</tr>"
                   for step in report.steps)
    head = "<tr><th>checkpoint</th><th>step</th>" + "".join(f"<th>{_e(group)}</th>" for group in series) + "</tr>"
    return (f"<h2>Norm ratio over checkpoints</h2>{'<div class=plots>' + svg + '</div>' if svg else ''}"
            f'<table class="sortable" id="steps"><thead>{head}</thead><tbody>{rows}</tbody></table>')


def _sibling(report, name: str, findings_by_tensor) -> str | None:
    """The nearest tensor of the same role at another depth with no finding."""
    from weightlint.roles import stack_role

    found = stack_role(name)
    if not found or not found[1]:
        return None
    candidates = [(abs(numbers[-1] - found[1][-1]), other) for other in report.tensors
                  if other != name and not findings_by_tensor.get(other)
                  and (role := stack_role(other)) and role[0] == found[0] and (numbers := role[1])]
    return min(candidates)[1] if candidates else None


def _tensor_plots(report, findings_by_tensor) -> str:
    flagged = sorted((name for name, findings in findings_by_tensor.items()
                      if name in report.tensors and report.tensors[name].get("sketch")
                      and max(f.severity for f in findings) >= Severity.WARNING),
                     key=lambda name: -max(f.severity for f in findings_by_tensor[name]))[:MAX_TENSOR_PLOTS]
    blocks = []
    for name in flagged:
        sibling = _sibling(report, name, findings_by_tensor)
        svg = html_plots.tensor_plot(name, report.tensors[name], sibling, report.tensors.get(sibling) if sibling else None,
                                     _worst(findings_by_tensor[name]))
        if svg:
            beside = f" beside its healthy sibling {_e(sibling)}" if sibling else " (no healthy sibling to compare)"
            blocks.append(f"<h3>{_e(name)}{beside}</h3><div class=\"plots\">{svg}</div>")
    return "<h2>Flagged tensors</h2>" + "".join(blocks) if blocks else ""


def _findings(report) -> str:
    if not report.findings:
        return "<h2>Findings</h2><p>No findings.</p>"
    items = []
    for finding in report.findings:
        rule = report.rules.get(finding.code)
        where = _e(finding.tensor or finding.file or "the model")
        doc = ""
        if rule is not None:
            doc = (f"<details><summary>{_e(rule.code)} {_e(rule.name)}: why and how to fix</summary>"
                   f"<pre>{_e(rule.why_bad.strip())}</pre><p><strong>Fix:</strong></p><pre>{_e(rule.how_to_fix.strip())}</pre>"
                   "</details>")
        items.append(f'<div class="finding {finding.severity}"><strong>{_e(finding.code)} {_e(finding.severity)}</strong> '
                     f"<code>{where}</code><br>{_e(finding.message)}{doc}</div>")
    return f"<h2>Findings ({len(report.findings)})</h2>" + "".join(items)


def _table(report, findings_by_tensor) -> str:
    head = ("<tr><th class=\"name\">tensor</th><th>shape</th><th>dtype</th>"
            + "".join(f"<th>{_e(label)}</th>" for label, _, _ in _columns(report)) + "<th>findings</th></tr>")
    rows = []
    for name, entry in report.tensors.items():
        findings = findings_by_tensor.get(name, [])
        cells = [f'<td class="name" data-value="{_e(name)}">{_e(name)}</td>',
                 f'<td data-value="{_e(entry.get("numel", 0))}">{_e("×".join(str(s) for s in entry.get("shape", ())))}</td>',
                 f'<td data-value="{_e(entry.get("dtype", ""))}">{_e(entry.get("dtype", ""))}</td>']
        for _, group, key in _columns(report):
            value = entry.get(group, {}).get(key)
            sortable = value if isinstance(value, (int, float)) and value is not None and math.isfinite(value) else (
                "1e308" if value == math.inf else "")
            cells.append(f'<td data-value="{_e(sortable)}">{_e(_number(value))}</td>')
        codes = " ".join(f"{f.code}" for f in findings)
        cells.append(f'<td data-value="{_e(codes)}">{_e(codes)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<h2>All tensors</h2><input id=\"filter\" placeholder=\"filter by name, code …\" aria-label=\"filter\">"
            f'<table class="sortable" id="tensors"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')


def _notes(report) -> str:
    if not report.notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{_e(note)}</li>" for note in report.notes) + "</ul>"
