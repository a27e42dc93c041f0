"""The guide's Python API: ``Scope(path).scan()`` and ``scope.compare_with(other)``.

A thin layer over :func:`weightlint.check`: ``scan`` returns the per-layer statistics grouped as the
guide names them, ``compare_with`` compares two checkpoints of one model layer by layer (the guide's
"training health" checks between consecutive checkpoints).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from weightlint.formatting import natural_key

# The guide's method names → the rules whose statistics they need.
METHODS = {
    "spectral": ("WL101", "WL401", "WL601"),
    "quantization": ("WL201", "WL202", "WL203"),
    "sparsity": ("WL501",),
    "precision": ("WL102",),
}

# Training-health thresholds between consecutive checkpoints (the guide's section 4).
DRASTIC_RATIO = 2.0          # l2_norm_ratio > 2 or < 0.5: drastic change (warning)
EXPLOSION_RATIO = 10.0       # > 10: gradient explosion (stop, lower the LR 10×, clip gradients)
CONDITION_GROWTH = 100.0     # condition number grown > 100×: growing instability
STALL_BAND = 0.01            # 0.99 < ratio < 1.01: the weights barely move (learning rate too low?)


class Scope:
    """A checkpoint (path, ``nn.Module`` or dict of tensors) to scan, as in the guide's examples."""

    def __init__(self, target: Any, device: str = "auto", **settings: Any) -> None:
        self.target = target
        self.device = device
        self.settings = settings
        self.report = None

    def scan(self, methods: Iterable[str] = ("all",), parallel: bool = True) -> dict[str, dict[str, dict]]:
        """``results[layer][group][metric]``, e.g. ``results[name]["spectral"]["condition_number"]``.

        ``methods``: any of ``spectral``, ``quantization``, ``sparsity``, ``precision`` or ``all``.
        ``parallel=False`` checks one tensor at a time.
        """
        from weightlint.execution.session import check

        methods = set(methods)
        unknown = methods - set(METHODS) - {"all"}
        if unknown:
            raise ValueError(f"unknown method(s) {sorted(unknown)}; expected {sorted(METHODS)} or 'all'")
        select = ["ALL"] if "all" in methods else ["WL0", "WL100", *(c for m in methods for c in METHODS[m])]
        settings = {"select": select, "device": self.device, **self.settings}
        if not parallel:
            settings["jobs"] = 1
        self.report = check(self.target, **settings)
        groups = ("finite", "norms", "sparsity", "precision", "spectral", "quantization")
        return {name: {group: entry[group] for group in groups if group in entry}
                for name, entry in self.report.tensors.items() if entry.get("judged")}

    def health_check(self) -> dict[str, Any]:
        """The guide's health check of the last scan: counts, score, verdict, findings."""
        if self.report is None:
            self.scan()
        summary = self.report.summary()
        return {**summary, "findings": [f.to_dict() for f in self.report.findings]}

    def compare_with(self, other: "Scope") -> dict[str, Any]:
        """Layer-by-layer comparison with a later checkpoint of the same model.

        For every tensor present in both: ``l2_norm_ratio`` (other / self), ``condition_number_ratio``
        and a ``status``: ``explosion`` (ratio > 10), ``drastic-change`` (> 2 or < 0.5),
        ``instability`` (condition number grew > 100×), ``stalled`` (0.99 < ratio < 1.01), ``ok``.
        """
        mine = self.scan(["spectral"]) if self.report is None else self._tensors()
        theirs = other.scan(["spectral"]) if other.report is None else other._tensors()
        comparisons = {}
        for name in mine.keys() & theirs.keys():
            comparisons[name] = _compare_layer(mine[name], theirs[name])
        statuses = [c["status"] for c in comparisons.values()]
        return {
            "layer_comparisons": dict(sorted(comparisons.items(), key=lambda item: natural_key(item[0]))),
            "summary": {status: statuses.count(status) for status in
                        ("explosion", "drastic-change", "instability", "stalled", "ok")},
            "only_in_first": sorted(mine.keys() - theirs.keys(), key=natural_key),
            "only_in_second": sorted(theirs.keys() - mine.keys(), key=natural_key),
        }

    def _tensors(self) -> dict[str, dict]:
        return {name: entry for name, entry in self.report.tensors.items() if entry.get("judged")}


def _ratio(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or isinstance(new, str) or isinstance(old, str):
        return None
    if old == 0:
        return math.inf if new else 1.0
    return new / old


def _compare_layer(before: dict, after: dict) -> dict[str, Any]:
    l2 = _ratio(after.get("norms", {}).get("l2"), before.get("norms", {}).get("l2"))
    condition = _ratio(after.get("spectral", {}).get("condition_number"),
                       before.get("spectral", {}).get("condition_number"))
    if l2 is not None and l2 > EXPLOSION_RATIO:
        status = "explosion"
    elif l2 is not None and (l2 > DRASTIC_RATIO or l2 < 1 / DRASTIC_RATIO):
        status = "drastic-change"
    elif condition is not None and condition > CONDITION_GROWTH:
        status = "instability"
    elif l2 is not None and abs(l2 - 1) < STALL_BAND:
        status = "stalled"
    else:
        status = "ok"
    return {"l2_norm_ratio": l2, "condition_number_ratio": condition, "status": status}
