"""The HTML report's plots: inline SVG drawn with matplotlib (the ``[html]`` extra).

Every function returns an ``<svg>`` string, or None when matplotlib is not installed (the page then
shows its tables and says how to get the plots). Nothing is fetched: fonts are embedded as paths.
"""

from __future__ import annotations

import io
import math
from typing import Any

SEVERITY_COLORS = {"error": "#c62828", "warning": "#ef8f00", "info": "#1e6fd9", None: "#2e7d32"}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


_FIGURES = iter(range(1 << 30))
STYLE = {"svg.fonttype": "path", "font.size": 8, "axes.titlesize": 9}


def _styled(draw):
    """Run a plotting function under the report's style, restored afterwards (``rc_context``)."""
    import functools

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        if not available():
            return None
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A matplotlib ``Figure`` of its own: no pyplot, no backend switch, no global state touched
    (a notebook calling the API keeps its own settings)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, [figure.add_subplot(rows, columns, index + 1) for index in range(rows * columns)]


def _svg(figure) -> str:
    """The figure as an ``<svg>`` element, its clip-path ids salted apart (several share a page)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"weightlint-{next(_FIGURES)}"}):
        figure.tight_layout()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


@_styled
def depth_plot(title: str, series: dict[str, list[tuple[int, float]]], log: bool = False) -> str | None:
    """One line per role across depth."""
    if not series:
        return None
    figure, (axes,) = _figure(5.2, 2.6)
    for role, points in series.items():
        points = sorted(p for p in points if p[1] is not None and math.isfinite(p[1]) and (p[1] > 0 or not log))
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2.5, linewidth=1,
                      label=_short(role))
    if log:
        axes.set_yscale("log")
    axes.set_title(_short(title))
    axes.set_xlabel("depth")
    axes.xaxis.set_major_locator(_integer_ticks())
    axes.grid(alpha=0.3)
    if len(series) <= 8:
        axes.legend(fontsize=6, loc="best", frameon=False)
    return _svg(figure)


@_styled
def tensor_plot(name: str, flagged: dict[str, Any], sibling_name: str | None, sibling: dict[str, Any] | None,
                severity: str) -> str | None:
    """A flagged tensor's ESD (log-log, with its power-law fit) and value histogram, beside a
    healthy sibling's."""
    figure, (esd_axes, histogram_axes) = _figure(7.2, 2.6, columns=2)
    color = SEVERITY_COLORS.get(severity, "#c62828")
    for label, stats, line_color in ((name, flagged, color), (sibling_name, sibling, SEVERITY_COLORS[None])):
        if not stats:
            continue
        sketch = stats.get("sketch", {})
        esd = sketch.get("esd", {})
        if esd.get("counts"):
            edges, counts = esd["edges"], esd["counts"]
            centers = [math.sqrt(edges[i] * edges[i + 1]) for i in range(len(counts))]
            density = [c / (edges[i + 1] - edges[i]) for i, c in enumerate(counts)]
            shown = [(x, y) for x, y in zip(centers, density, strict=True) if y > 0]
            esd_axes.plot([x for x, _ in shown], [y for _, y in shown], marker=".", linewidth=1, color=line_color,
                          label=_short(label))
            spectral = stats.get("spectral", {})
            alpha, xmin = spectral.get("alpha"), spectral.get("alpha_xmin")
            if alpha and xmin and shown:
                anchor = min(shown, key=lambda point: abs(math.log(point[0] / xmin)))
                xs = [x for x, _ in shown if x >= xmin]
                if xs:
                    esd_axes.plot(xs, [anchor[1] * (x / anchor[0]) ** -alpha for x in xs], linestyle="--",
                                  linewidth=0.8, color=line_color, label=f"fit α={alpha:.2f}")
        histogram = sketch.get("histogram", {})
        if histogram.get("counts"):
            edges = histogram["edges"]
            histogram_axes.stairs(histogram["counts"], edges, color=line_color, label=_short(label))
    esd_axes.set_xscale("log")
    esd_axes.set_yscale("log")
    esd_axes.set_title("eigenvalue spectrum (ESD)")
    esd_axes.set_xlabel("λ = σ²")
    esd_axes.legend(fontsize=6, frameon=False)
    histogram_axes.set_yscale("log")
    histogram_axes.set_title("values (central 99.8%)")
    histogram_axes.legend(fontsize=6, frameon=False)
    return _svg(figure)


@_styled
def step_plot(series: dict[str, list[tuple[int, float]]]) -> str | None:
    """``watch``: the median norm ratio of each layer group at each checkpoint."""
    if not series:
        return None
    figure, (axes,) = _figure(5.2, 2.6)
    for group, points in series.items():
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2.5, linewidth=1,
                  label=_short(group))
    axes.axhline(1.0, color="#888", linewidth=0.6)
    axes.set_title("norm ratio ‖NEW‖/‖OLD‖ per checkpoint (median of each group)")
    axes.set_xlabel("step")
    axes.grid(alpha=0.3)
    if len(series) <= 8:
        axes.legend(fontsize=6, frameon=False)
    return _svg(figure)


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _short(name: str | None) -> str:
    """A label: shortened, and with ``$`` escaped (matplotlib would read mathtext in a tensor name)."""
    if not name:
        return ""
    name = name if len(name) <= 48 else "…" + name[-47:]
    return name.replace("$", r"\$")
