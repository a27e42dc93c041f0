"""A PyTorch Lightning ``Callback`` that lints every checkpoint Lightning saves.

    from weightlint.integrations.lightning import WeightlintCallback

    trainer = lightning.Trainer(callbacks=[ModelCheckpoint(every_n_train_steps=500), WeightlintCallback()])

Each state dict Lightning saves is compared with the previous one (the first with the weights at
the start of training); findings are logged, and an error stops training (``trainer.should_stop``;
``stop_on=None`` only logs). Only the global-zero process checks. The callback keeps a summary of
the last weights it saw (norms, checksums, a sample: kilobytes per tensor, no copy of the model);
the checks are norm-based by default (``spectra=True`` adds WL703).
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    from pytorch_lightning.callbacks import Callback

from weightlint.integrations.training import TrainingMonitor


class WeightlintCallback(Callback):
    def __init__(self, stop_on: str | None = "error", spectra: bool = False, initial: bool = True,
                 **settings: Any) -> None:
        self.monitor = TrainingMonitor(stop_on=stop_on, spectra=spectra, **settings)
        self.initial = initial

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.initial:
            self.monitor.weights_saved(pl_module.state_dict(), label="the starting weights")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if not trainer.is_global_zero:
            return
        outcome = self.monitor.weights_saved(checkpoint["state_dict"], label=f"step {trainer.global_step}")
        if outcome.should_stop:
            trainer.should_stop = True
