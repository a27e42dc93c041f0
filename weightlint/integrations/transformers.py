"""A transformers ``TrainerCallback`` that lints every checkpoint the Trainer saves.

    from weightlint.integrations.transformers import WeightlintCallback

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[WeightlintCallback()])

On each save, the new ``checkpoint-N`` folder is compared with the previous one (the first with the
weights training started from) by ``weightlint diff``; findings are logged, and an error stops
training (``control.should_training_stop``; ``stop_on=None`` only logs). Only the main process
checks under distributed training. By default the checks are norm-based: one read of the new
checkpoint, compared with a summary kept of the previous one (``spectra=True`` adds WL703).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from weightlint.integrations.training import TrainingMonitor


class WeightlintCallback(TrainerCallback):
    """``initial=True``: compare the first checkpoint with the weights at the start of training
    (summarized from memory, not saved); ``False``: only check its files and NaN/Inf."""

    def __init__(self, stop_on: str | None = "error", spectra: bool = False, initial: bool = True,
                 **settings: Any) -> None:
        self.monitor_settings = dict(stop_on=stop_on, spectra=spectra, **settings)
        self.initial = initial
        self.monitor: TrainingMonitor | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return control
        start = model.state_dict() if self.initial and model is not None else None
        self.monitor = TrainingMonitor(initial=start, **self.monitor_settings)
        return control

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.monitor is None:
            return control
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if self.monitor.checkpoint_saved(checkpoint).should_stop:
            control.should_training_stop = True
        return control
