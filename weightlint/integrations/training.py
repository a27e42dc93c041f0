"""Lint each checkpoint a training run saves against the one before: a few lines in any loop.

    from weightlint.integrations.training import TrainingMonitor

    monitor = TrainingMonitor()                      # norm-based checks; spectra=True adds WL703
    for step in range(steps):
        ...
        if step % 500 == 0:
            save_file(model.state_dict(), path := f"ckpt/step_{step}.safetensors")
            if monitor.checkpoint_saved(path).should_stop:
                break

The first checkpoint is compared with the weights the run started from when ``initial`` is given
(a path or a state dict), else it is checked for broken files and NaN/Inf. Every later one is
compared with the previous checkpoint (``weightlint diff``: WL701–WL707). Each checkpoint is read
once: the monitor keeps a summary of the last one (norms, checksums, a sample of each tensor:
kilobytes, not a model; see :mod:`weightlint.diff.summary`), so the relative change is estimated
and the norm ratio exact.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from weightlint.finding import Finding, Severity

log = logging.getLogger("weightlint")


@dataclass
class Outcome:
    """What one checkpoint gave: its findings, and whether training should stop."""

    checkpoint: str
    compared_with: str | None
    findings: list[Finding]
    should_stop: bool
    report: Any = field(repr=False, default=None)


class TrainingMonitor:
    """Compares each saved checkpoint with the previous one and says when to stop.

    ``stop_on``: the severity that stops training (``"error"``; ``None`` never stops). ``spectra``:
    also compare condition numbers (WL703; an SVD per matrix, far more than a save costs).
    ``settings``: as for :func:`weightlint.check` (``select``, ``ignore``, ``rules``, ``config_file`` …).
    """

    def __init__(self, initial: Any = None, stop_on: str | None = "error", spectra: bool = False,
                 **settings: Any) -> None:
        from weightlint.execution.session import _config_from

        self.stop_on = Severity.parse(stop_on) if stop_on else None
        self.spectra = spectra
        self.config, self.config_file = _config_from(None, settings.pop("config_file", None), settings)
        self.previous: Any = None  # the CheckpointSummary of the last checkpoint
        self.previous_label: str | None = None
        self.history: list[Outcome] = []
        if initial is not None:
            self._screen(initial, "the initial weights")

    def checkpoint_saved(self, path: str | os.PathLike) -> Outcome:
        """Lint the checkpoint just written (a file or a folder) against the previous one."""
        return self._lint(os.fspath(path), os.fspath(path))

    def weights_saved(self, weights: dict, label: str) -> Outcome:
        """Lint a state dict being saved (``label`` names it in the logs) against the previous one.
        Tensors are copied to the CPU one at a time; no copy of the model is kept."""
        return self._lint(weights, label)

    def _screen(self, weights: Any, label: str) -> Any:
        """The check of a first checkpoint (its files and NaN/Inf), keeping its summary."""
        from weightlint.diff.engine import SummarySession, screening

        session = SummarySession([weights], screening(self.config), config_file=self.config_file, spectra=self.spectra)
        report = session.run()
        self.previous, self.previous_label = session.summary, label
        return report

    def _lint(self, current: Any, label: str) -> Outcome:
        import copy

        from weightlint.diff.engine import DiffSession

        compared_with = self.previous_label
        if self.previous is None:
            report = self._screen(current, label)
        else:
            session = DiffSession(self.previous, [current], copy.deepcopy(self.config), config_file=self.config_file,
                                  spectra=self.spectra)
            report = session.run()
            self.previous, self.previous_label = session.summary, label
        stop = self.stop_on is not None and any(f.severity >= self.stop_on for f in report.findings)
        outcome = Outcome(label, compared_with, list(report.findings), stop, report)
        for finding in report.findings:
            level = {Severity.ERROR: logging.ERROR, Severity.WARNING: logging.WARNING}.get(finding.severity, logging.INFO)
            log.log(level, "weightlint %s: %s %s %s: %s", label, finding.code, finding.severity, finding.tensor or "",
                    finding.message)
        if stop:
            log.error("weightlint: stopping training at %s (%s)", label,
                      ", ".join(sorted({f.code for f in report.findings if f.severity >= self.stop_on})))
        self.history.append(outcome)
        return outcome
