"""The guide's Python API: ``Scope(path).scan()`` and ``scope.compare_with(other)``.

A thin layer over :func:`weightlint.check` and :func:`weightlint.diff.engine.diff`: ``scan`` returns the
per-layer statistics grouped as the guide names them, ``compare_with`` compares two checkpoints of
one model layer by layer (the guide's "training health" checks between consecutive checkpoints).
"""

from __future__ import annotations

from typing import Any, Iterable

from weightlint.formatting import natural_key

# The guide's method names → the rules whose statistics they need.
METHODS = {
    "spectral": ("WL101", "WL401", "WL601"),
    "quantization": ("WL201", "WL202", "WL203"),
    "sparsity": ("WL501",),
    "precision": ("WL102",),
}


class Scope:
    """A checkpoint (path, ``nn.Module`` or dict of tensors) to scan, as in the guide's examples."""

    def __init__(self, target: Any, device: str = "auto", **settings: Any) -> None:
        self.target = target
        self.device = device
        self.settings = settings
        self.report = None
        self.diff_report = None

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
        """Layer-by-layer comparison with a later checkpoint of the same model: a view of
        ``weightlint diff`` (the same engine and WL7xx rules), kept in ``self.diff_report``; the
        scan's report (``health_check``) is left alone.

        For every tensor present in both: ``l2_norm_ratio`` (other / self), ``relative_change``,
        ``cosine``, ``condition_number_ratio`` and a ``status`` from the findings: ``explosion``
        (WL701), ``drastic-change`` (WL702), ``instability`` (WL703), ``ok``. A model that did not
        move is one finding, ``stagnation`` (WL704, with the share of tensors that did not move).
        """
        from weightlint.diff.engine import diff

        self.diff_report = diff(self.target, other.target, device="cpu", **self.settings)
        statuses: dict[str, str] = {}
        for finding in self.diff_report.findings:
            status = _STATUS_OF.get(finding.code)
            if status and finding.tensor and _STATUSES.index(status) < _STATUSES.index(statuses.get(finding.tensor, "ok")):
                statuses[finding.tensor] = status
        comparisons = {name: {**{key: entry["diff"].get(key) for key in
                                 ("l2_norm_ratio", "relative_change", "cosine", "condition_number_ratio")},
                              "status": statuses.get(name, "ok")}
                       for name, entry in self.diff_report.tensors.items()}
        stagnation = next((f.to_dict() for f in self.diff_report.findings if f.code == "WL704"), None)
        structure = [f for f in self.diff_report.findings if f.code == "WL707"]
        return {
            "layer_comparisons": dict(sorted(comparisons.items(), key=lambda item: natural_key(item[0]))),
            "summary": {status: sum(1 for c in comparisons.values() if c["status"] == status) for status in _STATUSES},
            "stagnation": stagnation,
            "only_in_first": [f.tensor for f in structure if f.extra.get("change") == "removed"],
            "only_in_second": [f.tensor for f in structure if f.extra.get("change") == "added"],
        }


# Per-layer statuses, worst first, from the WL7xx findings.
_STATUSES = ("explosion", "drastic-change", "instability", "ok")
_STATUS_OF = {"WL701": "explosion", "WL702": "drastic-change", "WL703": "instability"}
