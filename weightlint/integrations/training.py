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
(a path, or a state dict the monitor saves to a temporary file), else it is only checked for
NaN/Inf. Every later one is compared with the previous checkpoint (``weightlint diff``: WL701–WL707).
"""

from __future__ import annotations

import logging
import os
import tempfile
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
        self.stop_on = Severity.parse(stop_on) if stop_on else None
        self.spectra = spectra
        self.settings = settings
        self.previous: Any = None  # the last checkpoint: a path, or a CPU copy of a state dict
        self.history: list[Outcome] = []
        self._scratch: tempfile.TemporaryDirectory | None = None
        if initial is not None:
            self.previous = self._as_path(initial)

    def _as_path(self, weights: Any) -> str:
        if isinstance(weights, (str, os.PathLike)):
            return os.fspath(weights)
        from safetensors.torch import save_file

        self._scratch = self._scratch or tempfile.TemporaryDirectory(prefix="weightlint-initial-")
        path = os.path.join(self._scratch.name, "initial.safetensors")
        tensors = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in weights.items()
                   if hasattr(tensor, "detach")}
        save_file(_untied(tensors), path)
        return path

    def checkpoint_saved(self, path: str | os.PathLike) -> Outcome:
        """Lint the checkpoint just written (a file or a folder) against the previous one."""
        return self._lint(os.fspath(path), os.fspath(path))

    def weights_saved(self, weights: dict, label: str) -> Outcome:
        """Lint a state dict being saved (``label`` names it in the logs) against the previous one.

        The monitor keeps a CPU copy of the weights for the next comparison: memory for one model.
        """
        current = {name: tensor.detach().to("cpu").clone() for name, tensor in weights.items() if hasattr(tensor, "detach")}
        return self._lint(current, label)

    def _lint(self, current: Any, label: str) -> Outcome:
        from weightlint.diff.engine import diff
        from weightlint.execution.session import check

        if self.previous is None:
            report = check(current, select=["WL0", "WL100"], **self.settings)
        else:
            report = diff(self.previous, current, spectra=self.spectra, **self.settings)
        stop = self.stop_on is not None and any(f.severity >= self.stop_on for f in report.findings)
        outcome = Outcome(label, self.previous if isinstance(self.previous, str) else None, list(report.findings),
                          stop, report)
        for finding in report.findings:
            level = {Severity.ERROR: logging.ERROR, Severity.WARNING: logging.WARNING}.get(finding.severity, logging.INFO)
            log.log(level, "weightlint %s: %s %s %s: %s", label, finding.code, finding.severity, finding.tensor or "",
                    finding.message)
        if stop:
            log.error("weightlint: stopping training at %s (%s)", label,
                      ", ".join(sorted({f.code for f in report.findings if f.severity >= self.stop_on})))
        self.previous = current
        self.history.append(outcome)
        return outcome


def _untied(tensors: dict) -> dict:
    """Tensors sharing storage (tied embeddings) as separate copies, as safetensors requires."""
    seen: dict[int, str] = {}
    result = {}
    for name, tensor in tensors.items():
        key = tensor.untyped_storage().data_ptr()
        result[name] = tensor.clone() if key in seen else tensor
        seen.setdefault(key, name)
    return result
