"""Two checkpoints compared tensor by tensor, streamed: two tensors in memory at a time.

Tensors are matched by name. For each pair of judged tensors of one shape the change is measured
in float64, in blocks: the norms, ``l2_norm_ratio`` (‖NEW‖/‖OLD‖, the guide's name), the relative
change ‖NEW−OLD‖/‖OLD‖, the cosine similarity, and (for matrices, when spectra are on) the ratio of
condition numbers. Tensors added, removed, reshaped or re-typed are listed. The WL7xx rules judge
the pairs (``weightlint_check_pair``) and the whole diff (``weightlint_check_diff``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from weightlint.config import Config, limits
from weightlint.execution.report import Report
from weightlint.execution.session import Session, _in_natural_order, _sources_for
from weightlint.record import TensorRecord
from weightlint.stats import TensorStats

_BLOCK = 1 << 20  # values per block of the float64 sums


@dataclass
class TensorPair:
    """One tensor in both checkpoints, and how it changed (the tensor data itself is gone)."""

    old: TensorRecord
    new: TensorRecord
    stats: dict[str, Any]

    @property
    def name(self) -> str:
        return self.new.name

    @property
    def file(self) -> str:
        return self.new.file


@dataclass
class DiffView:
    """What ``weightlint_check_diff`` sees: every compared pair and the structural changes."""

    pairs: list[TensorPair]
    added: list[TensorRecord] = field(default_factory=list)
    removed: list[TensorRecord] = field(default_factory=list)
    reshaped: list[tuple[TensorRecord, TensorRecord]] = field(default_factory=list)
    retyped: list[tuple[TensorRecord, TensorRecord]] = field(default_factory=list)
    # (old, new) records of one shape, both judged: the pairs to measure (re-typed ones included).
    comparable: list[tuple[TensorRecord, TensorRecord]] = field(default_factory=list)


def change_statistics(old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    """Norms, ratio, relative change and cosine of two tensors of one shape, in float64 blocks."""
    old_flat, new_flat = old.reshape(-1), new.reshape(-1)
    sums = np.zeros(4)  # ‖old‖², ‖new‖², ⟨old, new⟩, ‖new − old‖²
    finite = True
    for start in range(0, old_flat.size, _BLOCK):
        a = old_flat[start:start + _BLOCK].astype(np.float64)
        b = new_flat[start:start + _BLOCK].astype(np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            finite = False
            break
        difference = b - a
        sums += (a @ a, b @ b, a @ b, difference @ difference)
    if not finite:
        return {"finite": False, "new_finite": bool(np.isfinite(new_flat).all()), "old_l2": None, "new_l2": None,
                "l2_norm_ratio": None, "relative_change": None, "cosine": None, "change_l2": None}
    old_l2, new_l2 = math.sqrt(sums[0]), math.sqrt(sums[1])
    change_l2 = math.sqrt(sums[3])
    return {
        "finite": True,
        "old_l2": old_l2,
        "new_l2": new_l2,
        # A zero old norm (a zero-initialized bias, LoRA B) has no ratio: judged on its new norm.
        "l2_norm_ratio": new_l2 / old_l2 if old_l2 > 0 else None,
        "relative_change": change_l2 / old_l2 if old_l2 > 0 else None,
        "change_l2": change_l2,
        "cosine": float(sums[2] / (old_l2 * new_l2)) if old_l2 > 0 and new_l2 > 0 else None,
    }


class DiffSession(Session):
    """``weightlint diff OLD NEW``: the sources of both sides, the file rules and the WL7xx rules.

    ``spectra`` adds the condition-number ratio of every matrix (two SVD-based spectra per pair:
    the expensive part); without it the diff is a pass over the data.
    """

    def __init__(self, old: Sequence[Any], new: Sequence[Any], config: Config | None = None,
                 config_file: Any = None, spectra: bool = True) -> None:
        super().__init__(list(new), config, config_file=config_file)
        with limits.using(self.config.limits):
            self.old_paths, self.old_sources, notes = _sources_for(list(old), architecture=False)
        self.notes.extend(notes)
        self.spectra = spectra

    def _run(self) -> Report:
        started = time.perf_counter()
        new_sources, self.sources = self.sources, self.old_sources
        old_records, problems = self._read_sources()
        self.sources = new_sources
        new_records, new_problems = self._read_sources()
        problems.extend(new_problems)
        new_records = _in_natural_order(new_records)
        report = Report(paths=self.old_paths + self.paths, sources=self.old_sources + self.sources,
                        records=new_records, findings=[], tensors={}, rules=self.rules, config=self.config,
                        device="cpu", seconds=0.0, mode="diff",
                        compared={"old": self.old_paths, "new": self.paths},
                        notes=[*self.notes, *(n for s in self.old_sources + self.sources for n in s.notes)])
        view = _match(old_records, new_records)
        try:
            for pair in self._compared(view):
                report.findings.extend(self._call_builtin_safe("weightlint_check_pair", f"tensor {pair.name}",
                                                               dict(pair=pair), pair.file))
                report.tensors[pair.name] = {**pair.new.describe(), "diff": pair.stats}
                view.pairs.append(pair)
        except KeyboardInterrupt:
            report.interrupted = True
        for problem in problems:
            report.findings.extend(self._call_builtin_safe("weightlint_file_problem", problem.file,
                                                           dict(problem=problem), problem.file))
        if not report.interrupted:
            report.findings.extend(self._call_builtin_safe("weightlint_check_diff", "the diff", dict(diff=view),
                                                           self.paths[0] if self.paths else "the diff"))
        report.findings = self.policy.apply(report.findings, report)
        report.findings.sort(key=lambda f: f.sort_key)
        report.seconds = time.perf_counter() - started
        return report

    def _compared(self, view: DiffView):
        """Each comparable pair with its change statistics, one pair of tensors in memory at a time."""
        for old, new in view.comparable:
            old_values = TensorStats.load_values(old, "cpu")
            new_values = TensorStats.load_values(new, "cpu")
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                stats = change_statistics(np.asarray(old_values), np.asarray(new_values))
                if self.spectra and new.is_matrix and stats["finite"]:
                    conditions = [TensorStats(record, "cpu", values=values).spectral.get("condition_number")
                                  for record, values in ((old, old_values), (new, new_values))]
                    stats["old_condition_number"], stats["new_condition_number"] = conditions
                    stats["condition_number_ratio"] = (conditions[1] / conditions[0]
                                                       if conditions[0] and conditions[1] is not None else None)
            del old_values, new_values
            yield TensorPair(old, new, stats)


def _match(old_records: list[TensorRecord], new_records: list[TensorRecord]) -> DiffView:
    """Pairs by name, in the new checkpoint's order; what was added, removed, reshaped, re-typed."""
    old_by_name = {record.name: record for record in old_records}
    new_names = {record.name for record in new_records}
    view = DiffView(pairs=[])
    for new in new_records:
        old = old_by_name.get(new.name)
        if old is None:
            view.added.append(new)
            continue
        if tuple(old.shape) != tuple(new.shape):
            view.reshaped.append((old, new))
            continue
        if old.dtype_name != new.dtype_name:
            view.retyped.append((old, new))
        if old.is_judged and new.is_judged:
            view.comparable.append((old, new))
    view.removed = [record for record in old_records if record.name not in new_names]
    return view


def diff(old: Any, new: Any, config: Config | None = None, config_file: str | None = None, spectra: bool = True,
         **settings: Any) -> Report:
    """Compare two checkpoints of one model from Python (paths, modules or dicts of tensors)."""
    from weightlint.execution.session import _config_from

    config, raw = _config_from(config, config_file, settings)
    old_targets = old if isinstance(old, (list, tuple)) else [old]
    new_targets = new if isinstance(new, (list, tuple)) else [new]
    return DiffSession(old_targets, new_targets, config, config_file=raw, spectra=spectra).run()
