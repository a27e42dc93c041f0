"""TorchScript archives read without running them, and state dicts nested under any key.

The synthetic files are built here with known truth; the ``corpus`` tests compare the real
silero-vad TorchScript archive and resemblyzer checkpoint with what PyTorch itself loads.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import weightlint
from weightlint.sources import torchscript
from weightlint.sources.torch_pickle import MAX_DEPTH

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux and macOS
CORPUS = Path(os.environ.get("WEIGHTLINT_CORPUS_DIR") or Path(__file__).parent.parent / "benchmarks/.cache/corpus")
SILERO = CORPUS / "silero-vad-6.2.3/silero_vad/data/silero_vad.jit"
RESEMBLYZER = CORPUS / "resemblyzer-0.1.4/resemblyzer/pretrained.pt"
FILE_RULES = ["WL001", "WL002"]  # the real files are read in full; their numeric findings are not the point here

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|load)` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


class Small(nn.Module):
    """A Linear, a Conv1d, a BatchNorm (buffers), an own buffer and a plain tensor attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.conv = nn.Conv1d(3, 5, 3)
        self.norm = nn.BatchNorm1d(5)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 5))
        self.steps = torch.zeros(2)  # not a parameter or buffer: not in state_dict()
        with torch.no_grad():
            self.norm.running_mean.uniform_(-1, 1)
            self.norm.running_var.uniform_(0.5, 2)
            self.norm.num_batches_tracked.fill_(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear(x).unsqueeze(-1).repeat(1, 1, 3)
        return self.norm(self.conv(hidden)).squeeze(-1) * self.scale + self.steps.sum()


SMALL_BUFFERS = {"scale", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"}


def save_script(path: str) -> dict[str, torch.Tensor]:
    """The scripted Small saved to ``path``; returns its state_dict, the truth."""
    torch.manual_seed(0)
    scripted = torch.jit.script(Small())
    scripted.save(path)
    return {name: tensor.detach().clone() for name, tensor in scripted.state_dict().items()}


def rewrite_member(path: str, suffix: str, rewrite) -> None:
    """Replace the archive member ending in ``suffix`` (``/data.pkl`` …) by ``rewrite(its bytes)``."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    (target,) = [name for name in members if name.endswith(suffix)]
    members[target] = rewrite(members[target])
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def codes(report) -> set[str]:
    return {finding.code for finding in report.findings}


def assert_same_tensors(report, truth: dict[str, torch.Tensor]) -> None:
    assert [record.name for record in report.records] == list(truth)
    for record in report.records:
        loaded = record.load()
        expected = truth[record.name]
        assert (record.shape, loaded.dtype) == (tuple(expected.shape), expected.dtype), record.name
        assert torch.equal(loaded, expected), record.name


class TouchFile:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


# -- TorchScript archives -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["small.pt", "small.jit"])
def test_torchscript_parameters_and_buffers_match_state_dict(name, monkeypatch):
    truth = save_script(name)

    def refuse(*args, **kwargs):
        raise AssertionError("the archive must not be loaded through PyTorch")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    report = weightlint.check(name)

    assert [source.format for source in report.sources] == ["torchscript"]
    assert_same_tensors(report, truth)
    assert {record.name for record in report.records if record.is_buffer} == SMALL_BUFFERS
    module_types = {record.name: record.metadata["module_type"] for record in report.records}
    assert (module_types["linear.weight"], module_types["norm.running_var"], module_types["scale"]) == (
        "Linear", "BatchNorm1d", "Small")
    assert not codes(report) & {"WL001", "WL002"}, [f.to_dict() for f in report.findings]
    assert any("steps" in note and "neither parameter nor buffer" in note for note in report.notes)


def test_torchscript_code_is_parsed_not_run(tmp_path):
    truth = save_script("small.pt")
    marker = tmp_path / "code-ran"
    run_me = f"open({str(marker)!r}, 'w').close()\n".encode()
    rewrite_member("small.pt", f"/code/__torch__/{Small.__module__.replace('.', '/')}.py", lambda code: run_me + code)

    report = weightlint.check("small.pt")

    assert not marker.exists(), "code/ was executed"
    assert_same_tensors(report, truth)
    assert {record.name for record in report.records if record.is_buffer} == SMALL_BUFFERS  # declared in code/
    assert not codes(report) & {"WL001", "WL002"}


@pytest.mark.parametrize("member", ["/data.pkl", "/constants.pkl"])
def test_torchscript_with_a_malicious_global_is_unsafe_and_never_run(tmp_path, member):
    marker = tmp_path / "pwned"
    save_script("evil.pt")
    rewrite_member("evil.pt", member, lambda _: pickle.dumps(TouchFile(str(marker)), protocol=2))

    report = weightlint.check("evil.pt")

    assert not marker.exists(), "the pickle's payload ran"
    (finding,) = report.findings
    assert finding.code == "WL002"
    assert finding.extra["globals"] == [SYSTEM]
    assert finding.message.startswith(f"loading would import or call {SYSTEM}")
    assert finding.message.endswith("; not executed")
    assert report.records == []


def test_torchscript_unpickler_refuses_what_the_scan_misses(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    save_script("evil.pt")
    rewrite_member("evil.pt", "/data.pkl", lambda _: pickle.dumps(TouchFile(str(marker)), protocol=2))
    monkeypatch.setattr(torchscript, "script_offending_globals", lambda archive: [])

    report = weightlint.check("evil.pt")

    assert not marker.exists()
    (finding,) = report.findings
    assert (finding.code, finding.extra["globals"]) == ("WL002", [SYSTEM])


# -- state dicts nested under any key -----------------------------------------------------------------

def trained_state() -> tuple[dict[str, torch.Tensor], dict]:
    """A small model's state dict and its Adam optimizer's state after one step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    return model.state_dict(), optimizer.state_dict()


def test_state_dict_nested_under_any_key():
    state, optimizer_state = trained_state()
    torch.save({"model_state": state, "optimizer_state": optimizer_state, "step": 3}, "run.pt")

    report = weightlint.check("run.pt")

    assert_same_tensors(report, state)
    assert {record.metadata.get("nested_under") for record in report.records} == {"model_state"}
    assert not codes(report) & {"WL001", "WL002"}
    assert "run.pt: optimizer state not checked (18 tensors)" in report.notes  # step, moments × 6


def test_several_nested_state_dicts_are_named_by_their_key_paths():
    state, _ = trained_state()
    torch.save({"generator": state, "discriminator": {"head.weight": torch.ones(2, 2)}, "epoch": 1}, "gan.pt")

    report = weightlint.check("gan.pt")

    assert [record.name for record in report.records] == [f"generator.{name}" for name in state] + [
        "discriminator.head.weight"]
    assert all("nested_under" not in record.metadata for record in report.records)
    assert not codes(report) & {"WL001", "WL002"}


def test_known_wrapper_wins_over_other_tensors():
    state, _ = trained_state()
    callbacks = {"ModelCheckpoint": {"best_model_score": torch.tensor(0.9)}}
    torch.save({"state_dict": state, "callbacks": callbacks}, "lightning.ckpt")

    report = weightlint.check("lightning.ckpt")

    assert [record.name for record in report.records] == list(state)
    assert any("1 other tensor not checked (callbacks.ModelCheckpoint.best_model_score)" in note
               for note in report.notes)


def test_optimizer_state_alone_is_listed_as_buffers():
    _, optimizer_state = trained_state()
    torch.save(optimizer_state, "optimizer.pt")

    report = weightlint.check("optimizer.pt")

    assert len(report.records) == 18  # step and two moments for each of the 6 parameters
    assert report.records[0].name == "0.step"
    assert report.records[0].metadata["nested_under"] == "state"
    assert all(record.is_buffer and not record.is_judged for record in report.records)
    assert not codes(report) & {"WL001", "WL002"}


def test_deep_structure_is_cut_off_with_a_note():
    deep: list = [torch.ones(2)]
    for _ in range(3 * MAX_DEPTH):
        deep = [deep]
    torch.save({"model": {"w": torch.ones(2, 2)}, "history": deep}, "deep.pt")

    report = weightlint.check("deep.pt")

    assert [record.name for record in report.records] == ["w"]
    assert f"deep.pt: objects nested deeper than {MAX_DEPTH} levels not searched for tensors" in report.notes
    assert not codes(report) & {"WL001", "WL002"}


def test_self_referencing_structure_is_read_once():
    checkpoint: dict = {"weights": {"w": torch.ones(2, 2)}}
    checkpoint["weights"]["again"] = checkpoint
    checkpoint["loop"] = [checkpoint]
    torch.save(checkpoint, "loop.pt")

    for target in ("loop.pt", checkpoint):
        report = weightlint.check(target)
        assert [record.name for record in report.records] == ["w"]
        assert not codes(report) & {"WL001", "WL002"}


# -- the real-model corpus ----------------------------------------------------------------------------

@pytest.mark.corpus
@pytest.mark.skipif(not SILERO.is_file(), reason="corpus not installed (python benchmarks/corpus.py)")
def test_silero_vad_torchscript_matches_jit_load():
    truth = torch.jit.load(str(SILERO), map_location="cpu").state_dict()  # our own trusted test file

    report = weightlint.check(SILERO, select=FILE_RULES)

    assert_same_tensors(report, truth)
    assert {record.name.split(".")[0] for record in report.records} == {"_model", "_model_8k"}  # 16 and 8 kHz
    assert {record.name for record in report.records if record.is_buffer} == {
        "_model.stft.forward_basis_buffer", "_model_8k.stft.forward_basis_buffer"}
    assert not codes(report) & {"WL001", "WL002"}


@pytest.mark.corpus
@pytest.mark.skipif(not RESEMBLYZER.is_file(), reason="corpus not installed (python benchmarks/corpus.py)")
def test_resemblyzer_model_state_is_found():
    truth = torch.load(RESEMBLYZER, map_location="cpu", weights_only=True)["model_state"]

    report = weightlint.check(RESEMBLYZER, select=FILE_RULES)

    assert_same_tensors(report, truth)
    assert {record.metadata.get("nested_under") for record in report.records} == {"model_state"}
    assert not codes(report) & {"WL001", "WL002"}
