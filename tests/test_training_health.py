"""Training health on real training runs: a tiny GPT-2 trained by the Hugging Face Trainer on
synthetic data, on CPU in seconds, with a checkpoint every few steps.

(a) a sane learning rate: no error between any two checkpoints; (b) an absurd one that diverges:
the error fires, names the first alarming checkpoint, and the callback stops the run by itself;
(c) learning rate 0, or every layer frozen: reported as stagnating (WL704).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import weightlint
from weightlint.diff.engine import diff

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate", reason="the Trainer needs accelerate (in the test extra)")

from weightlint.integrations.transformers import WeightlintCallback  # noqa: E402

STEPS, SAVE_EVERY = 60, 10


class Tokens(torch.utils.data.Dataset):
    """Sequences of a repeating pattern with noise: something a tiny model can learn."""

    def __init__(self, count: int = 64, length: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        start = torch.randint(0, 32, (count, 1), generator=generator)
        self.ids = (start + torch.arange(length)) % 64

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def train(folder: Path, learning_rate: float, optimizer: str = "adamw_torch", freeze: bool = False,
          callback: WeightlintCallback | None = None) -> list[Path]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    if freeze:  # every layer frozen; the final norm trains, so that there is a backward pass at all
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("transformer.ln_f."))
    args = transformers.TrainingArguments(
        output_dir=str(folder), max_steps=STEPS, save_steps=SAVE_EVERY, learning_rate=learning_rate, optim=optimizer,
        per_device_train_batch_size=8, report_to=[], logging_strategy="no", use_cpu=True, seed=0,
        lr_scheduler_type="constant", disable_tqdm=True, save_only_model=True, max_grad_norm=0.0 if optimizer == "sgd" else 1.0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(),
                                   callbacks=[callback] if callback else [])
    trainer.train()
    return sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


def consecutive_diffs(checkpoints: list[Path], **settings):
    return [(old.name, new.name, diff(str(old), str(new), spectra=False, **settings))
            for old, new in zip(checkpoints, checkpoints[1:])]


def errors(report) -> list[tuple[str, str]]:
    return sorted({(f.code, f.tensor) for f in report.findings if f.severity == weightlint.Severity.ERROR})


def test_a_sane_learning_rate_raises_no_error(tmp_path):
    checkpoints = train(tmp_path, learning_rate=1e-3)
    assert [path.name for path in checkpoints] == [f"checkpoint-{s}" for s in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY)]
    for old, new, report in consecutive_diffs(checkpoints):
        assert errors(report) == [], (old, new)
        assert not any(f.code == "WL704" for f in report.findings), (old, new)  # it trains
        ratios = [entry["diff"]["l2_norm_ratio"] for entry in report.tensors.values()
                  if entry["diff"]["l2_norm_ratio"] is not None]
        assert 0.5 < min(ratios) and max(ratios) < 2.5  # biases move most early on (not judged: matrices_only)


def test_a_diverging_run_is_caught_and_the_callback_stops_it(tmp_path):
    callback = WeightlintCallback()
    checkpoints = train(tmp_path / "run", learning_rate=30.0, optimizer="sgd", callback=callback)
    history = callback.monitor.history
    alarming = [outcome for outcome in history if outcome.should_stop]
    assert alarming, [(o.checkpoint, [(f.code, f.message) for f in o.findings]) for o in history]
    first = alarming[0]
    # The run stopped by itself at the first alarming checkpoint: nothing was saved after it.
    assert Path(first.checkpoint) == checkpoints[-1] and len(checkpoints) < STEPS // SAVE_EVERY
    assert {f.code for f in first.findings if f.severity == weightlint.Severity.ERROR} & {"WL701", "WL100"}


@pytest.mark.parametrize("setting", ["zero learning rate", "frozen"])
def test_a_run_that_does_not_learn_is_stagnating(tmp_path, setting):
    checkpoints = train(tmp_path, learning_rate=0.0 if setting == "zero learning rate" else 1e-3,
                        freeze=setting == "frozen")
    for old, new, report in consecutive_diffs(checkpoints[:3]):
        (stagnation,) = [f for f in report.findings if f.code == "WL704"]
        moving = 0 if setting == "zero learning rate" else 2  # ln_f.weight and ln_f.bias
        assert stagnation.extra["still"] == stagnation.extra["compared"] - moving > 10, (old, new)
        assert stagnation.message.startswith(f"{stagnation.extra['still']} of {stagnation.extra['compared']} tensors")


def test_frozen_and_trainable_globs(tmp_path):
    checkpoints = train(tmp_path, learning_rate=1e-3)
    report = diff(str(checkpoints[0]), str(checkpoints[1]), spectra=False,
                  rules={"WL705": {"frozen": ["transformer.h.0.*"]}, "WL706": {"trainable": ["transformer.wpe.*"]}})
    frozen = {f.tensor for f in report.findings if f.code == "WL705"}
    assert frozen and all(name.startswith("transformer.h.0.") for name in frozen)
    assert [f for f in report.findings if f.code == "WL706"] == []  # the position embeddings do train


# -- weightlint watch ----------------------------------------------------------------------------

def write_run(folder: Path) -> None:
    """Four checkpoints of one run under four naming schemes; one layer explodes at step 300."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    weights = {f"h.{i}.mlp.weight": (rng.standard_normal((32, 32)) * 0.02).astype(np.float32) for i in range(4)}
    folder.mkdir(parents=True)
    for step, name in ((100, "step_100.safetensors"), (200, "epoch=1-step=200.ckpt"),
                       (300, "checkpoint-300"), (400, "global_step400")):
        weights = {k: v * 1.01 + rng.standard_normal(v.shape).astype(np.float32) * 1e-3 for k, v in weights.items()}
        if step == 300:
            weights["h.2.mlp.weight"] = weights["h.2.mlp.weight"] * 20
        if name.endswith(".ckpt"):
            torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, folder / name)
        elif name.endswith(".safetensors"):
            save_file(weights, str(folder / name))
        else:
            (folder / name).mkdir()
            save_file(weights, str(folder / name / "model.safetensors"))
    (folder / "notes.txt").write_text("not a checkpoint")
    (folder / "logs").mkdir()


def test_checkpoints_are_ordered_by_step_whatever_their_naming(tmp_path):
    from weightlint.diff.watch import discover, step_of

    write_run(tmp_path / "run")
    assert [(c.step, c.name) for c in discover([str(tmp_path / "run")])] == [
        (100, "step_100.safetensors"), (200, "epoch=1-step=200.ckpt"), (300, "checkpoint-300"), (400, "global_step400")]
    assert [step_of(n) for n in ("checkpoint-1000", "step-20.pt", "epoch=3-step=1200.ckpt", "model.safetensors")] == [
        1000, 20, 1200, None]


def test_watch_names_the_first_alarming_checkpoint(tmp_path, capsys):
    from weightlint.cli import main

    write_run(tmp_path / "run")
    assert main(["watch", str(tmp_path / "run")]) == weightlint.ExitCode.FINDINGS
    out = capsys.readouterr().out
    assert "note: compared 3 pairs of consecutive checkpoints (each read once), steps 100, 200, 300, 400" in out
    assert "note: first WL701 exploding-change (error): checkpoint-300 (step 300)" in out
    assert ("note: trend (norm ratio median/max @step), h.*.mlp.weight: 1.013/1.014 @200, 1.012/20.29 @300, "
            "1.01/1.012 @400") in out


def test_watch_json_holds_the_trend_as_steps(tmp_path, capsys):
    from weightlint.cli import main

    write_run(tmp_path / "run")
    main(["watch", str(tmp_path / "run"), "--format", "json"])
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert [(step["checkpoint"], step["step"]) for step in steps] == [
        ("epoch=1-step=200.ckpt", 200), ("checkpoint-300", 300), ("global_step400", 400)]
    assert steps[1]["groups"]["h.*.mlp.weight"] == pytest.approx(1.012, abs=1e-3)


def test_watch_reads_each_checkpoint_once_and_survives_deleted_ones(tmp_path, monkeypatch):
    """save_total_limit=1: each checkpoint is deleted once the next is linted; the comparison goes
    on from the summary, and no tensor is read twice."""
    import shutil

    from weightlint.config import Config
    from weightlint.diff.watch import Watch
    from weightlint.sources import safetensors_file
    from weightlint.stats import TensorStats

    write_run(tmp_path / "run")
    exact = Watch([str(tmp_path / "run")], Config(), exact=True).run()
    reads: list[tuple] = []  # whole tensors loaded, and tensors read in chunks (by file and offset)
    load, read_chunks = TensorStats.load_values, safetensors_file.read_chunks
    monkeypatch.setattr(TensorStats, "load_values",
                        staticmethod(lambda record, device="cpu": reads.append((record.file, record.name))
                                     or load(record, device)))
    monkeypatch.setattr(safetensors_file, "read_chunks",
                        lambda path, offset, *rest: reads.append((path, offset)) or read_chunks(path, offset, *rest))
    linted: list = []

    def delete_previous(checkpoint, report):
        if linted:
            shutil.rmtree(linted[-1].path) if os.path.isdir(linted[-1].path) else os.remove(linted[-1].path)
        linted.append(checkpoint)

    report = Watch([str(tmp_path / "run")], Config(), on_checkpoint=delete_previous).run()
    assert len(reads) == len(set(reads)) == 4 * 4  # four checkpoints of four tensors, each read once
    assert sorted(os.listdir(tmp_path / "run")) == ["global_step400", "logs", "notes.txt"]
    assert [(f.code, f.tensor, f.file) for f in report.findings] == [(f.code, f.tensor, f.file) for f in exact.findings]
    for name, entry in report.tensors.items():
        estimated, measured = entry["diff"], exact.tensors[name]["diff"]
        # Both sum float32 products of 128 values in float64 (to ~1e-8; SIMD order varies with alignment).
        assert estimated["l2_norm_ratio"] == pytest.approx(measured["l2_norm_ratio"], rel=1e-7)
        # 32×32 matrices are below the sample size: the summary holds every value, the change is measured.
        assert estimated["relative_change"] == pytest.approx(measured["relative_change"], rel=1e-6)


def test_watch_follow_waits_for_a_checkpoint_being_written(tmp_path):
    import threading

    import numpy as np
    from safetensors.numpy import save_file

    from weightlint.config import Config
    from weightlint.diff.watch import Watch

    write_run(tmp_path / "run")
    # A save in progress: the header promises more data than the file has yet.
    half = tmp_path / "run" / "checkpoint-500"
    half.mkdir()
    save_file({f"h.{i}.mlp.weight": np.full((32, 32), 0.02, np.float32) for i in range(4)}, str(tmp_path / "full"))
    data = (tmp_path / "full").read_bytes()
    (half / "model.safetensors").write_bytes(data[: len(data) // 2])
    timer = threading.Timer(2.5, lambda: (half / "model.safetensors").write_bytes(data))
    timer.start()
    report = Watch([str(tmp_path / "run")], Config(), follow=True, timeout=8, poll_seconds=0.5).run()
    timer.join()
    assert report.notes[0] == "compared 4 pairs of consecutive checkpoints (each read once), steps 100, 200, 300, 400, 500"
    assert not [f for f in report.findings if f.code == "WL001"]  # never reported as broken


# -- PyTorch Lightning ---------------------------------------------------------------------------

def lightning_run(tmp_path: Path, learning_rate: float):
    lightning = pytest.importorskip("lightning", reason="lightning is in the test extra")
    from weightlint.integrations.lightning import (
        WeightlintCallback as LightningCallback,
    )

    class Regression(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

        def training_step(self, batch, _index):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=learning_rate)

    torch.manual_seed(0)
    x = torch.randn(256, 16)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    callback = LightningCallback()
    checkpoints = lightning.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=10, save_top_k=-1)
    trainer = lightning.Trainer(max_steps=60, callbacks=[checkpoints, callback], logger=False, accelerator="cpu",
                                enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Regression(), data)
    return trainer, callback


# Lightning's own use of a torch pytree API that torch 2.13 deprecates: not ours to fix.
LIGHTNING_NOISE = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")


@LIGHTNING_NOISE
def test_lightning_callback_lets_a_sane_run_finish(tmp_path):
    trainer, callback = lightning_run(tmp_path, learning_rate=1e-2)
    assert trainer.global_step == 60
    assert [o.checkpoint for o in callback.monitor.history][:2] == ["the starting weights", "step 10"]
    assert not any(outcome.should_stop for outcome in callback.monitor.history)


@LIGHTNING_NOISE
def test_lightning_callback_stops_a_diverging_run(tmp_path):
    trainer, callback = lightning_run(tmp_path, learning_rate=5.0)
    stopped = [outcome for outcome in callback.monitor.history if outcome.should_stop]
    assert stopped and trainer.global_step < 60
    assert {f.code for f in stopped[0].findings} & {"WL701", "WL100"}
