"""``weightlint plan``: the decision tree on planted matrices (each decision exactly), the low-rank
plan against WL401, and every emitted format read by its consumer: transformers' own module
replacement, torchao's ``quantize_``, the gguf package's tensor names, llm-compressor's recipe
schema (its package pins conflict with this environment: checked with PyYAML)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

import weightlint
from weightlint.cli import main
from weightlint.plans.emit import emit

torch = pytest.importorskip("torch")


def planted() -> dict[str, np.ndarray]:
    """One matrix per decision of the default tree (64 rows)."""
    rng = np.random.default_rng(0)
    uniform = rng.uniform(-1, 1, (64, 512))                                   # no outliers, 48 dB per tensor
    rows = rng.standard_normal((64, 512)) * np.geomspace(1, 300, 64)[:, None]  # rows of very different scales
    spiky = rng.uniform(-1, 1, (64, 512))
    spiky[:, 0] = 30.0               # one spike per row: 0.2% outliers, 26.7 dB even per channel
    outliers = rng.standard_t(2, (64, 2048))  # heavy tails: 6.7% outliers, 25.2 dB per channel
    return {name: value.astype(np.float32) for name, value in (
        ("h.0.int8.weight", uniform), ("h.0.per_channel.weight", rows), ("h.0.int16.weight", spiky),
        ("h.0.fp16.weight", outliers))}


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(planted(), str(path))
    return path


def decisions(report) -> dict[str, str]:
    return {entry.tensor: entry.decision for entry in report.plans["quant"].decisions}


def test_each_planted_matrix_gets_its_decision(checkpoint):
    report = weightlint.check(str(checkpoint), plans=("quant",), select=["WL0"])
    assert decisions(report) == {"h.0.int8.weight": "int8", "h.0.per_channel.weight": "int8-per-channel",
                                 "h.0.int16.weight": "int16", "h.0.fp16.weight": "fp16"}
    document = report.plans["quant"].to_json()
    assert (document["int8_layers"], document["int8_per_channel_layers"], document["int16_layers"],
            document["fp16_layers"]) == (["h.0.int8.weight"], ["h.0.per_channel.weight"], ["h.0.int16.weight"],
                                         ["h.0.fp16.weight"])
    assert "special_layers" not in document  # the default tree has no such branch
    entry = next(d for d in document["decisions"] if d["tensor"] == "h.0.int16.weight")
    assert entry["module"] == "h.0.int16" and entry["reason"].endswith("≤ 1% outliers")


def test_the_guide_tree_and_thresholds_from_the_configuration(checkpoint, tmp_path):
    guide = weightlint.check(str(checkpoint), plans=("quant",), select=["WL0"], profile="guide")
    # The guide counts outliers over the whole tensor: rows of different scales are 25% "outliers"
    # there (special handling), though per-channel int8 keeps them at 40 dB.
    assert decisions(guide) == {"h.0.int8.weight": "int8", "h.0.per_channel.weight": "special",
                                "h.0.int16.weight": "int16", "h.0.fp16.weight": "fp16"}
    assert guide.plans["quant"].to_json()["special_layers"] == ["h.0.per_channel.weight"]
    config = tmp_path / "weightlint.yaml"
    config.write_text("plan:\n  quant:\n    int8_min_sqnr_db: 60\n")
    strict = weightlint.check(str(checkpoint), plans=("quant",), select=["WL0"], config_file=str(config))
    assert decisions(strict)["h.0.int8.weight"] == "int8-per-channel"  # 48 dB no longer reaches int8


def test_a_misspelt_threshold_is_a_usage_error_with_a_suggestion(checkpoint, tmp_path, capsys):
    config = tmp_path / "weightlint.yaml"
    config.write_text("plan:\n  quant:\n    int8_min_sqr_db: 35\n")
    assert main(["plan", "quant", str(checkpoint), "--config", str(config)]) == weightlint.ExitCode.USAGE_ERROR
    assert "did you mean 'int8_min_sqnr_db'" in capsys.readouterr().err


def test_the_low_rank_plan_agrees_with_wl401(tmp_path):
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((256, 12)) @ rng.standard_normal((12, 256))
    tensors = {"low.weight": (signal + 0.5 * rng.standard_normal((256, 256))).astype(np.float32),
               "full.weight": rng.standard_normal((256, 256)).astype(np.float32)}
    report = weightlint.check(tensors, plans=("lowrank",), select=["WL401"])
    plan = {entry["tensor"]: entry for entry in report.plans["lowrank"].to_json()["matrices"]}
    finding = next(f for f in report.findings if f.code == "WL401")
    assert finding.tensor == "low.weight"
    assert plan["low.weight"]["suggested_rank"] == finding.extra["suggested_rank"] == 54
    assert plan["low.weight"]["predicted_relative_error"] == pytest.approx(finding.extra["predicted_relative_error"])
    assert plan["low.weight"]["factorize"] and plan["low.weight"]["parameters_saved"] == 65536 - 54 * 512
    assert not plan["full.weight"]["factorize"] and plan["full.weight"]["parameters_saved"] == 0
    u, s, vh = np.linalg.svd(tensors["low.weight"].astype(np.float64))
    rank = plan["low.weight"]["suggested_rank"]
    approximation = (u[:, :rank] * s[:rank]) @ vh[:rank]
    measured = np.linalg.norm(tensors["low.weight"] - approximation) / np.linalg.norm(tensors["low.weight"])
    assert measured == pytest.approx(plan["low.weight"]["predicted_relative_error"], rel=1e-4)


# -- the consumers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_plan(minilm, tmp_path_factory):
    """MiniLM's plan with a per-channel floor of 41 dB, so that some linear layers stay 16-bit."""
    config = tmp_path_factory.mktemp("plan") / "weightlint.yaml"
    config.write_text("plan:\n  quant:\n    per_channel_min_sqnr_db: 41\n")
    report = weightlint.check(str(minilm), plans=("quant",), select=["WL0"], config_file=str(config))
    plan = report.plans["quant"]
    assert 0 < len(plan.modules("int16", "fp16", linear_only=True)) < 30
    return plan, report


def meta_minilm(minilm):
    import transformers

    config = transformers.AutoConfig.from_pretrained(minilm)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(config)


def test_transformers_own_replacement_skips_exactly_the_planned_modules(minilm, minilm_plan):
    from transformers import FineGrainedFP8Config
    from transformers.integrations.finegrained_fp8 import replace_with_fp8_linear

    plan, _ = minilm_plan
    emitted = json.loads(emit(plan, "transformers"))
    model = meta_minilm(minilm)
    replace_with_fp8_linear(model, modules_to_not_convert=emitted["modules_to_not_convert"],
                            quantization_config=FineGrainedFP8Config())
    unconverted = {name for name, module in model.named_modules() if type(module) is torch.nn.Linear}
    assert unconverted == set(plan.modules("int16", "fp16", "special", linear_only=True))
    assert emitted["llm_int8_skip_modules"] == emitted["modules_to_not_convert"]


def test_torchao_quantizes_exactly_the_planned_modules(minilm, minilm_plan):
    torchao = pytest.importorskip("torchao.quantization")
    import transformers

    plan, _ = minilm_plan
    namespace: dict = {}
    exec(compile(emit(plan, "torchao"), "<emitted torchao>", "exec"), namespace)  # noqa: S102 - our output
    model = transformers.AutoModel.from_pretrained(minilm)
    torchao.quantize_(model, torchao.Int8WeightOnlyConfig(), filter_fn=namespace["filter_fn"])
    quantized = {name for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and type(module.weight).__name__ != "Parameter"}
    assert quantized == set(plan.modules("int8", "int8-per-channel", linear_only=True))


def test_the_llmcompressor_recipe_follows_its_schema(minilm, minilm_plan):
    plan, _ = minilm_plan
    recipe = yaml.safe_load(emit(plan, "llmcompressor"))
    modifier = recipe["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    linear = {name for name, module in meta_minilm(minilm).named_modules() if isinstance(module, torch.nn.Linear)}
    targeted = [target for group in modifier["config_groups"].values() for target in group["targets"]]
    names = [re.fullmatch(r"re:\^(.*)\$", target).group(1).replace("\\", "") for target in targeted + modifier["ignore"]]
    assert sorted(names) == sorted(linear)  # every linear layer exactly once: quantized or ignored
    for group in modifier["config_groups"].values():
        assert group["weights"]["num_bits"] == 8 and group["weights"]["type"] == "int"
        assert group["weights"]["strategy"] in ("tensor", "channel") and group["weights"]["symmetric"] is True


def test_llamacpp_lines_name_gguf_tensors(minilm, minilm_plan):
    import gguf

    plan, report = minilm_plan
    text = emit(plan, "llamacpp", report)
    lines = [line for line in text.splitlines() if line.startswith("--tensor-type")]
    # BERT's pooler has no GGUF name (llama.cpp's converter drops it): said, not guessed.
    assert len(lines) == len(plan.decisions) - 1
    assert "# no GGUF name for 1 tensor(s): pooler.dense.weight" in text
    arch = next(arch for arch, name in gguf.MODEL_ARCH_NAMES.items() if name == "bert")
    valid = {gguf.TENSOR_NAMES[tensor].format(bid=block) + ".weight" for tensor in gguf.MODEL_TENSORS[arch]
             for block in range(6)}
    emitted = {}
    for line in lines:
        pattern, kind = line.removeprefix("--tensor-type ").rsplit("=", 1)
        emitted[pattern.replace("\\", "")] = kind
    assert set(emitted) <= valid
    kinds = {entry.decision: {"int8": "q8_0", "int8-per-channel": "q8_0"}.get(entry.decision, "f16")
             for entry in plan.decisions}
    assert set(emitted.values()) == set(kinds.values())
    assert "# int8 and per-channel int8 → Q8_0" in emit(plan, "llamacpp", report)


def test_the_command_line_writes_plans(checkpoint, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "quant", str(checkpoint), "--emit", "json", "-o", str(out)]) == weightlint.ExitCode.OK
    assert json.loads(out.read_text())["fp16_layers"] == ["h.0.fp16.weight"]
    assert main(["plan", "lowrank", str(checkpoint), "--emit", "json"]) == weightlint.ExitCode.OK
    assert {m["tensor"] for m in json.loads(capsys.readouterr().out)["matrices"]} == set(planted())
    assert main(["check", str(checkpoint), "--plan", "quant,lowrank", "--format", "json", "-q",
                 "--exit-zero"]) == weightlint.ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert set(document["plans"]) == {"quant", "lowrank"}
    assert main(["check", str(checkpoint), "--plan", "quantize"]) == weightlint.ExitCode.USAGE_ERROR
    assert "unknown plan 'quantize'" in capsys.readouterr().err
    assert main(["plan", "quant", str(checkpoint), "--emit", "gptq"]) == weightlint.ExitCode.USAGE_ERROR


def test_module_names_of_conv1d_and_tied_weights(tmp_path):
    """GPT-2: Conv1D modules keep their names, and the output head tied to the token embeddings
    is planned with them (its weight is stored once)."""
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300,
                                                                 n_positions=32))
    model.save_pretrained(tmp_path / "gpt2")
    report = weightlint.check(str(tmp_path / "gpt2"), plans=("quant",), select=["WL0"])
    entries = {entry.tensor: entry for entry in report.plans["quant"].decisions}
    assert entries["transformer.h.0.attn.c_attn.weight"].module == "transformer.h.0.attn.c_attn"
    assert entries["transformer.h.0.attn.c_attn.weight"].module_type == "Conv1D"
    assert entries["transformer.wte.weight"].tied == ["lm_head"]
    plan = report.plans["quant"]
    decision = entries["transformer.wte.weight"].decision
    assert "lm_head" in plan.modules(decision) and "transformer.wte" in plan.modules(decision)


def test_the_guide_tiers_only_under_the_guide_profile():
    rng = np.random.default_rng(0)
    tensors = {"low.weight": (rng.standard_normal((256, 4)) @ rng.standard_normal((4, 256))).astype(np.float32)}
    default = weightlint.check(tensors, plans=("lowrank",), select=["WL0"]).plans["lowrank"].to_json()
    guide = weightlint.check(tensors, plans=("lowrank",), select=["WL0"], profile="guide").plans["lowrank"].to_json()
    assert "guide_tier" not in default["matrices"][0]
    assert guide["matrices"][0]["guide_tier"] == "LoRA rank 4" and guide["matrices"][0]["suggested_rank"] == 4


def test_constant_matrices_null_thresholds_and_hostile_names(tmp_path, capsys):
    tensors = {"constant.weight": np.full((64, 64), 0.5, np.float32),
               "a\n--tensor-type .*=q2_k\n#.weight": np.random.default_rng(0).uniform(-1, 1, (64, 64)).astype(np.float32)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "weightlint.yaml").write_text("plan:\n  quant:\n    int8_min_sqnr_db: null\n    fp16_min_outliers: null\n")
    for emit_format in ("json", "llamacpp", "transformers"):
        code = main(["plan", "quant", str(tmp_path / "model.safetensors"), "--emit", emit_format,
                     "--config", str(tmp_path / "weightlint.yaml")])
        assert code == weightlint.ExitCode.OK, emit_format
    out = capsys.readouterr().out
    assert "Traceback" not in out and '"inf"' in out  # the constant matrix's SQNR, as the JSON report writes it
    assert not [line for line in out.splitlines() if line.startswith("--tensor-type .*")]
