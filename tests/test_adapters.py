"""PEFT adapters made by the real ``peft`` package: a small BERT (6 layers) fine-tuned with LoRA for
a few steps on CPU. The trained adapter is clean; each planted defect gives exactly its finding on
the right module, and nothing else fires."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import weightlint
from weightlint import Severity
from weightlint.cli import main

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft", reason="peft is in the test extra")
transformers = pytest.importorskip("transformers")

MODULE = "base_model.model.encoder.layer.3.attention.self.query"


def train_adapter(folder: Path, base_folder: Path, rank: int = 8, steps: int = 40, **lora) -> None:
    """A tiny BERT saved as the base, and a LoRA adapter on it trained on a regression task."""
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                                     intermediate_size=128, vocab_size=200, max_position_embeddings=64,
                                     initializer_range=0.1)  # weights the size of a pretrained model's
    base = transformers.BertModel(config)
    base.save_pretrained(base_folder)
    settings = dict(r=rank, lora_alpha=2 * rank, target_modules=["query", "value"], **lora)
    model = peft.get_peft_model(base, peft.LoraConfig(**settings))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    generator = torch.Generator().manual_seed(1)
    ids, target = torch.randint(0, 200, (64, 16), generator=generator), torch.randn(64, 64, generator=generator)
    for _ in range(steps):
        batch = torch.randint(0, 64, (16,), generator=generator)
        loss = torch.nn.functional.mse_loss(model(input_ids=ids[batch]).last_hidden_state.mean(1), target[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("peft")
    train_adapter(root / "adapter", root / "base")
    return root / "adapter", root / "base"


def variant(trained, tmp_path: Path, change=None, config_change=None) -> Path:
    """A copy of the trained adapter with its tensors (``change``) or config (``config_change``) edited."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "variant"
    shutil.copytree(trained[0], folder)
    if change is not None:
        tensors = load_file(folder / "adapter_model.safetensors")
        change(tensors)
        save_file(tensors, folder / "adapter_model.safetensors")
    if config_change is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        config_change(config)
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def found(report) -> set[tuple[str, str | None, Severity]]:
    return {(f.code, f.tensor, f.severity) for f in report.findings}


def test_a_trained_adapter_is_clean(trained):
    report = weightlint.check(str(trained[0]))
    assert found(report) == set()
    assert len(report.records) == 24  # 6 layers × (query, value) × (lora_A, lora_B)


def test_a_trained_adapter_is_clean_against_its_base(trained):
    report = weightlint.check(str(trained[0]), base_model=str(trained[1]))
    assert found(report) == set()


def zero_b(tensors):
    tensors[f"{MODULE}.lora_B.weight"].zero_()


def scale_b(tensors):
    tensors[f"{MODULE}.lora_B.weight"] *= 20


def three_rows(tensors):
    b = tensors[f"{MODULE}.lora_B.weight"]
    kept = b[[3, 30, 50]].clone() * 5
    b.zero_()
    b[[3, 30, 50]] = kept


def plant_nan(tensors):
    tensors[f"{MODULE}.lora_A.weight"][0, 0] = float("nan")


@pytest.mark.parametrize("change, expected", [
    (zero_b, {("WL804", f"{MODULE}.lora_B.weight", Severity.WARNING)}),
    (scale_b, {("WL802", f"{MODULE}.lora_B.weight", Severity.WARNING)}),
    (three_rows, {("WL803", f"{MODULE}.lora_B.weight", Severity.WARNING)}),
    (plant_nan, {("WL100", f"{MODULE}.lora_A.weight", Severity.ERROR)}),
], ids=["B zeroed", "scaled x20", "three rows", "NaN"])
def test_each_planted_defect_is_caught_on_its_module(trained, tmp_path, change, expected):
    assert found(weightlint.check(str(variant(trained, tmp_path, change)))) == expected


def test_a_declared_rank_of_16_with_actual_rank_2(tmp_path):
    from safetensors.torch import load_file, save_file

    train_adapter(tmp_path / "adapter", tmp_path / "base", rank=16)
    path = tmp_path / "adapter" / "adapter_model.safetensors"
    tensors = load_file(path)
    b = tensors[f"{MODULE}.lora_B.weight"]
    tensors[f"{MODULE}.lora_B.weight"] = (b[:, :2] @ torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
                                          ).contiguous()
    save_file(tensors, path)
    assert found(weightlint.check(str(tmp_path / "adapter"))) == {("WL801", f"{MODULE}.lora_B.weight", Severity.WARNING)}


def test_a_config_naming_a_module_without_tensors(trained, tmp_path):
    folder = variant(trained, tmp_path, config_change=lambda c: c.update(target_modules=["query", "value", "key"]))
    report = weightlint.check(str(folder))
    assert found(report) == {("WL805", None, Severity.WARNING)}
    assert report.findings[0].message == "target module 'key' of adapter_config.json matches no module with LoRA tensors"


def test_a_pickle_next_to_the_adapter(trained, tmp_path):
    folder = variant(trained, tmp_path)
    torch.save({"step": 1}, folder / "extra.pkl")
    report = weightlint.check(str(folder))
    assert [(f.code, f.severity, f.file) for f in report.findings] == [
        ("WL807", Severity.WARNING, str(folder / "extra.pkl"))]


def test_a_base_model_of_another_size(trained, tmp_path):
    other = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                                                           intermediate_size=64, vocab_size=200))
    other.save_pretrained(tmp_path / "other")
    report = weightlint.check(str(trained[0]), base_model=str(tmp_path / "other"))
    assert {f.code for f in report.findings} == {"WL808"}
    assert len(report.findings) == 12
    assert "the update is 64×64 but the base weight encoder.layer.0.attention.self.query.weight is 32×32" in {
        f.message.split(": ", 1)[1] for f in report.findings}


def test_the_command_line_takes_base_model_and_refuses_abbreviations(trained, capsys):
    assert main([str(trained[0]), "--base-model", str(trained[1]), "-q"]) == weightlint.ExitCode.OK
    assert main([str(trained[0]), "--base", str(trained[1])]) == weightlint.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --base" in capsys.readouterr().err


def test_dora_magnitudes_are_judged_against_the_base(tmp_path):
    from safetensors.torch import load_file, save_file

    train_adapter(tmp_path / "adapter", tmp_path / "base", use_dora=True)
    assert found(weightlint.check(str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))) == set()
    path = tmp_path / "adapter" / "adapter_model.safetensors"
    tensors = load_file(path)
    tensors[f"{MODULE}.lora_magnitude_vector"][:4] *= 100
    save_file(tensors, path)
    report = weightlint.check(str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))
    assert found(report) == {("WL809", f"{MODULE}.lora_magnitude_vector", Severity.WARNING)}
    assert "DoRA magnitudes rescale rows" in report.findings[0].message


def test_fan_in_fan_out_gpt2_against_its_base(tmp_path):
    """GPT-2's Conv1D stores weights in × out: PEFT's fan_in_fan_out, honoured against the base."""
    torch.manual_seed(0)
    base = transformers.GPT2Model(transformers.GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=100,
                                                          n_positions=32, initializer_range=0.1))
    base.save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                      fan_in_fan_out=True))
    with torch.no_grad():  # a trained-looking B (PEFT starts it at zero)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    model.save_pretrained(tmp_path / "adapter")
    report = weightlint.check(str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))
    assert found(report) == set()
    assert report.findings == [] and "base_norm" not in json.dumps(report.notes)


def test_other_peft_types_are_read_as_plain_tensors_with_a_note(tmp_path):
    torch.manual_seed(0)
    base = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                          intermediate_size=64, vocab_size=100))
    model = peft.get_peft_model(base, peft.IA3Config(target_modules=["key", "value", "output.dense"],
                                                     feedforward_modules=["output.dense"]))
    model.save_pretrained(tmp_path / "ia3")
    report = weightlint.check(str(tmp_path / "ia3"))
    assert found(report) == set()
    assert any("a IA3 adapter: its tensors are checked as plain tensors" in note for note in report.notes)
    assert len(report.records) > 0
