"""Every source kind, on generated fixtures with planted defects whose names and indices are known.

Each test works inside its own ``tmp_path`` (the working directory is switched there), so the file
names in findings are exactly the relative paths the test passed.
"""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import weightlint
from tests.engine_helpers import CLI_SELECT, SELECT, check, weights  # noqa: F401
from weightlint import ExitCode, Severity

NAN = float("nan")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


# -- helpers --------------------------------------------------------------------------------------


def save_st(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, str(path))
    return str(path)


def save_pt(path: str | Path, obj, **kwargs) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, str(path), **kwargs)
    return str(path)


def write_index(path: str | Path, weight_map: dict[str, str]) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return str(path)


def findings(report, code: str | None = None, tensor: str | None = None) -> list:
    return [f for f in report.findings
            if (code is None or f.code == code) and (tensor is None or f.tensor == tensor)]


def only(report, code: str, tensor: str | None = None):
    found = findings(report, code, tensor)
    assert len(found) == 1, [f.to_dict() for f in report.findings]
    return found[0]


def names(report) -> list[str]:
    return [record.name for record in report.records]


def with_nan(tensor: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[index] = NAN
    return tensor


def with_zero_row(tensor: torch.Tensor, row: int) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[row] = 0
    return tensor


def with_zero_column(tensor: torch.Tensor, column: int) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[:, column] = 0
    return tensor


def assert_not_judged(report, name: str) -> None:
    entry = report.tensors[name]
    assert entry["judged"] is False
    for group in ("finite", "norms", "sparsity"):
        assert group not in entry, (name, entry)
    assert findings(report, tensor=name) == []


# -- single files ---------------------------------------------------------------------------------

def test_single_safetensors_nan_zero_row_and_non_floating():
    save_st("model.safetensors", {
        "encoder.layer.weight": with_nan(weights(6, 4), (2, 3)),
        "decoder.weight": with_zero_row(weights(5, 3, seed=1), 4),
        "decoder.bias": weights(5, seed=2),
        "embeddings.position_ids": torch.arange(7, dtype=torch.int64).unsqueeze(0),
        "attn.attention_mask": torch.ones(3, 3, dtype=torch.bool),
    })
    report = check("model.safetensors")

    assert sorted(names(report)) == ["attn.attention_mask", "decoder.bias", "decoder.weight",
                                     "embeddings.position_ids", "encoder.layer.weight"]
    assert set(report.tensors) == set(names(report))
    assert report.model()["format"] == "safetensors"
    assert {r.file for r in report.records} == {"model.safetensors"}

    nan = only(report, "WL100")
    assert (nan.tensor, nan.file, nan.severity) == ("encoder.layer.weight", "model.safetensors", Severity.ERROR)
    assert nan.location == {"index": [2, 3]}
    assert nan.value == 1

    dead = only(report, "WL501")
    assert (dead.tensor, dead.file, dead.severity) == ("decoder.weight", "model.safetensors", Severity.INFO)
    assert dead.location == {"rows": [4], "columns": []}
    assert report.tensors["decoder.weight"]["sparsity"]["zero_rows"] == [4]
    assert report.tensors["decoder.weight"]["sparsity"]["zero_columns"] == []

    assert len(report.findings) == 2
    assert report.exit_code == ExitCode.FINDINGS
    assert report.summary()["counts"] == {"error": 1, "warning": 0, "info": 1}

    for name in ("embeddings.position_ids", "attn.attention_mask"):
        assert_not_judged(report, name)
    assert report.tensors["embeddings.position_ids"]["dtype"] == "int64"
    assert report.tensors["embeddings.position_ids"]["shape"] == [1, 7]
    assert report.tensors["attn.attention_mask"]["dtype"] == "bool"
    assert report.tensors["decoder.bias"]["judged"] is True
    assert "norms" in report.tensors["decoder.bias"]


def test_clean_safetensors_exit_zero():
    save_st("clean.safetensors", {"w": weights(4, 4), "b": weights(4)})
    report = check("clean.safetensors")
    assert report.findings == []
    assert report.exit_code == ExitCode.OK
    assert report.parameter_count == 20


def test_hf_folder_with_model_safetensors():
    Path("bert").mkdir()
    Path("bert/config.json").write_text("{}")
    save_st("bert/model.safetensors", {
        "bert.embeddings.word_embeddings.weight": with_zero_column(weights(10, 4), 1),
        "bert.pooler.dense.weight": weights(4, 4),
        "bert.embeddings.position_ids": torch.arange(10).unsqueeze(0),
    })
    report = check("bert")
    assert sorted(names(report)) == ["bert.embeddings.position_ids", "bert.embeddings.word_embeddings.weight",
                                     "bert.pooler.dense.weight"]
    assert {r.file for r in report.records} == {"bert/model.safetensors"}
    dead = only(report, "WL501")
    assert dead.tensor == "bert.embeddings.word_embeddings.weight"
    assert dead.file == "bert/model.safetensors"
    assert dead.location == {"rows": [], "columns": [1]}
    assert report.notes == []
    assert report.exit_code == ExitCode.OK  # info only


def test_sharded_safetensors_with_index():
    shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    save_st(f"llm/{shard1}", {"model.embed.weight": weights(8, 4), "model.layers.0.q.weight": weights(4, 4)})
    save_st(f"llm/{shard2}", {"model.layers.1.q.weight": with_nan(weights(4, 4), (3, 0)),
                              "lm_head.weight": with_zero_row(weights(8, 4), 6)})
    write_index("llm/model.safetensors.index.json", {
        "model.embed.weight": shard1, "model.layers.0.q.weight": shard1,
        "model.layers.1.q.weight": shard2, "lm_head.weight": shard2,
    })
    report = check("llm")

    assert sorted(names(report)) == ["lm_head.weight", "model.embed.weight", "model.layers.0.q.weight",
                                     "model.layers.1.q.weight"]
    assert report.model()["format"] == "safetensors-sharded"
    assert report.sources[0].files == [f"llm/{shard1}", f"llm/{shard2}"]
    assert {r.name: r.file for r in report.records}["lm_head.weight"] == f"llm/{shard2}"
    assert findings(report, "WL006") == []

    nan = only(report, "WL100")
    assert (nan.tensor, nan.file, nan.location) == ("model.layers.1.q.weight", f"llm/{shard2}", {"index": [3, 0]})
    dead = only(report, "WL501")
    assert (dead.tensor, dead.location) == ("lm_head.weight", {"rows": [6], "columns": []})
    assert len(report.findings) == 2


def test_index_json_passed_directly():
    save_st("m/a.safetensors", {"x.weight": weights(3, 3)})
    write_index("m/model.safetensors.index.json", {"x.weight": "a.safetensors"})
    report = check("m/model.safetensors.index.json")
    assert names(report) == ["x.weight"]
    assert report.findings == []


def test_pytorch_model_bin_in_folder():
    save_pt("gpt/pytorch_model.bin", {
        "transformer.wte.weight": weights(10, 4),
        "transformer.h.0.attn.bias": torch.ones(1, 1, 4, 4, dtype=torch.bool),
        "transformer.h.0.ln.weight": weights(4),
        "lm_head.weight": with_zero_column(weights(10, 4, seed=3), 2),
    })
    report = check("gpt")
    assert names(report) == ["transformer.wte.weight", "transformer.h.0.attn.bias",
                             "transformer.h.0.ln.weight", "lm_head.weight"]
    assert report.model()["format"] == "pytorch"
    assert {r.file for r in report.records} == {"gpt/pytorch_model.bin"}
    dead = only(report, "WL501")
    assert (dead.tensor, dead.file, dead.location) == ("lm_head.weight", "gpt/pytorch_model.bin",
                                                       {"rows": [], "columns": [2]})
    assert_not_judged(report, "transformer.h.0.attn.bias")
    assert len(report.findings) == 1


def test_sharded_bin_with_index():
    shard1, shard2 = "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"
    save_pt(f"big/{shard1}", {"enc.weight": with_nan(weights(5, 3), (4, 2)), "enc.bias": weights(5)})
    save_pt(f"big/{shard2}", {"dec.weight": weights(3, 5), "dec.position_ids": torch.arange(3)})
    write_index("big/pytorch_model.bin.index.json", {
        "enc.weight": shard1, "enc.bias": shard1, "dec.weight": shard2, "dec.position_ids": shard2,
    })
    report = check("big")
    assert sorted(names(report)) == ["dec.position_ids", "dec.weight", "enc.bias", "enc.weight"]
    assert report.model()["format"] == "pytorch-sharded"
    nan = only(report, "WL100")
    assert (nan.tensor, nan.file, nan.location) == ("enc.weight", f"big/{shard1}", {"index": [4, 2]})
    assert findings(report, "WL006") == []
    assert len(report.findings) == 1
    assert_not_judged(report, "dec.position_ids")


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_pickle_suffixes(suffix):
    path = save_pt(f"weights{suffix}", {"net.0.weight": with_zero_row(weights(4, 3), 0), "net.0.bias": weights(4)})
    assert zipfile.is_zipfile(path)
    report = check(path)
    assert names(report) == ["net.0.weight", "net.0.bias"]
    dead = only(report, "WL501")
    assert (dead.tensor, dead.file, dead.location) == ("net.0.weight", f"weights{suffix}", {"rows": [0], "columns": []})
    assert len(report.findings) == 1


def test_lightning_checkpoint():
    state = {
        "model.encoder.weight": with_nan(weights(4, 6), (1, 5)),
        "model.encoder.bias": weights(4),
        "model.head.weight": weights(2, 4),
        "model.bn.running_mean": torch.zeros(4),
        "model.bn.num_batches_tracked": torch.tensor(12),
    }
    save_pt("epoch=3.ckpt", {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.2.0",
        "state_dict": state,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.full((4, 6), NAN), "step": torch.tensor(3.0)}},
                              "param_groups": [{"lr": 0.1, "params": [0]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"hidden": 4},
    })
    report = check("epoch=3.ckpt")
    assert names(report) == list(state)  # optimizer moments are not weights
    assert {r.metadata.get("nested_under") for r in report.records} == {"state_dict"}
    nan = only(report, "WL100")
    assert (nan.tensor, nan.file, nan.location) == ("model.encoder.weight", "epoch=3.ckpt", {"index": [1, 5]})
    assert len(report.findings) == 1
    assert_not_judged(report, "model.bn.running_mean")
    assert_not_judged(report, "model.bn.num_batches_tracked")


def test_deepspeed_checkpoint_keeps_module_prefix():
    module = {
        "module.embed.weight": weights(6, 3),
        "module.layers.0.weight": with_zero_row(weights(3, 3), 2),
        "module.layers.0.bias": weights(3),
    }
    save_pt("mp_rank_00_model_states.pt", {"module": module, "buffer_names": [], "optimizer": None,
                                           "global_steps": 10, "ds_version": "0.14.0"})
    report = check("mp_rank_00_model_states.pt")
    assert names(report) == list(module)
    assert {r.metadata.get("nested_under") for r in report.records} == {"module"}
    dead = only(report, "WL501")
    assert (dead.tensor, dead.location) == ("module.layers.0.weight", {"rows": [2], "columns": []})


def test_plain_state_dict_with_module_prefix_from_data_parallel():
    state = {"module.fc.weight": weights(3, 3), "module.fc.bias": weights(3)}
    save_pt("dp.pt", state)
    report = check("dp.pt")
    assert names(report) == list(state)
    assert all("nested_under" not in r.metadata for r in report.records)


def test_model_key_nesting():
    save_pt("train_state.pth", {"model": {"w": with_nan(weights(2, 2), (0, 1))}, "step": 5})
    report = check("train_state.pth")
    assert names(report) == ["w"]
    assert only(report, "WL100").location == {"index": [0, 1]}


def test_legacy_non_zip_pickle():
    path = save_pt("legacy.pt", {"conv.weight": with_zero_row(weights(4, 2, 3, 3), 3), "conv.bias": weights(4),
                                 "ids": torch.arange(4)}, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    report = check(path)
    assert names(report) == ["conv.weight", "conv.bias", "ids"]
    assert report.tensors["conv.weight"]["shape"] == [4, 2, 3, 3]
    dead = only(report, "WL501")
    assert (dead.tensor, dead.file, dead.location) == ("conv.weight", "legacy.pt", {"rows": [3], "columns": []})
    assert len(report.findings) == 1
    assert_not_judged(report, "ids")


def test_single_tensor_pickle():
    save_pt("tensor.pt", with_nan(weights(3, 3), (2, 2)))
    report = check("tensor.pt")
    assert names(report) == ["tensor"]
    assert only(report, "WL100").location == {"index": [2, 2]}


# -- in memory ------------------------------------------------------------------------------------

class Conv1D(torch.nn.Module):
    """Shaped like Hugging Face's Conv1D: weight stored (in, out)."""

    def __init__(self, nx: int, nf: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weights(nx, nf, seed=7))
        self.bias = torch.nn.Parameter(torch.zeros(nf))

    def forward(self, x):  # pragma: no cover - never called
        return x @ self.weight + self.bias


def test_in_memory_module_with_batchnorm_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight[1] = 0
        model[1].running_var[1] = NAN
        model[1].running_mean[0] = float("inf")
        model[2].weight[0, 2] = NAN
    report = check(model)

    assert names(report) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                             "1.num_batches_tracked", "2.weight", "2.bias"]
    assert report.model()["format"] == "module"
    for buffer in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert_not_judged(report, buffer)
    assert report.tensors["1.num_batches_tracked"]["dtype"] == "int64"

    dead = only(report, "WL501")
    assert (dead.tensor, dead.location) == ("0.weight", {"rows": [1], "columns": []})
    nan = only(report, "WL100")
    assert (nan.tensor, nan.location) == ("2.weight", {"index": [0, 2]})
    assert len(report.findings) == 2


def test_in_memory_module_conv1d_layout_from_class():
    model = torch.nn.Module()
    model.proj = Conv1D(4, 6)
    with torch.no_grad():
        model.proj.weight[:, 5] = 0  # column of the stored (in, out) tensor = output unit 5
    report = check(model)
    dead = only(report, "WL501")
    assert dead.tensor == "proj.weight"
    assert dead.location == {"rows": [5], "columns": []}
    assert report.tensors["proj.weight"]["layout"] == "in_out"


def test_in_memory_dict_of_tensors():
    state = {"a.weight": with_zero_column(weights(3, 5), 4), "a.bias": weights(3),
             "tokens": torch.tensor([1, 2, 3]), "mask": torch.tensor([True, False])}
    report = check(state)
    assert names(report) == list(state)
    assert report.model()["format"] == "state-dict"
    dead = only(report, "WL501")
    assert (dead.tensor, dead.location) == ("a.weight", {"rows": [], "columns": [4]})
    assert_not_judged(report, "tokens")
    assert_not_judged(report, "mask")
    assert len(report.findings) == 1


def test_in_memory_lightning_style_dict():
    state = {"model.w": with_nan(weights(3, 3), (2, 0)), "model.bn.running_var": torch.full((3,), NAN)}
    report = check({"state_dict": state, "epoch": 3, "optimizer_states": [{"state": {}}]})
    assert names(report) == ["model.w", "model.bn.running_var"]
    assert only(report, "WL100").location == {"index": [2, 0]}
    assert_not_judged(report, "model.bn.running_var")


def test_buffers_and_integers_get_no_finding_from_any_rule():
    # Every rule, not only the selected ones: buffers and non-floating tensors are never judged.
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].running_var.fill_(NAN)
        model[1].running_mean.zero_()
    state = {**model.state_dict(), "embeddings.position_ids": torch.zeros(1, 8, dtype=torch.int64),
             "attention_mask": torch.zeros(4, 4, dtype=torch.bool)}
    report = weightlint.check(state)
    unjudged = {"1.running_mean", "1.running_var", "1.num_batches_tracked", "embeddings.position_ids",
                "attention_mask"}
    assert unjudged <= set(report.tensors)
    assert [f.to_dict() for f in report.findings if f.tensor in unjudged] == []
    for name in unjudged:
        assert report.tensors[name]["judged"] is False
        assert "norms" not in report.tensors[name]


# -- folders --------------------------------------------------------------------------------------

def test_folder_with_safetensors_and_bin_scans_only_safetensors():
    save_st("hf/model.safetensors", {"w": weights(3, 3)})
    save_pt("hf/pytorch_model.bin", {"w": with_nan(weights(3, 3), (0, 0)), "only_in_bin": weights(2)})
    report = check("hf")
    assert names(report) == ["w"]
    assert {r.file for r in report.records} == {"hf/model.safetensors"}
    assert report.findings == []  # the NaN in the .bin copy was not judged (its globals were scanned)
    assert len(report.notes) == 1
    assert "pytorch_model.bin" in report.notes[0]
    assert "weights not checked" in report.notes[0]


def test_folder_of_subfolders_recursive():
    save_st("zoo/bert/model.safetensors", {"bert.w": with_nan(weights(3, 3), (1, 1))})
    save_pt("zoo/gpt/pytorch_model.bin", {"gpt.w": with_zero_row(weights(4, 2), 3)})
    save_st("zoo/deep/er/still/x.safetensors", {"deep.w": weights(2, 2)})
    save_st("zoo/sharded/s1.safetensors", {"sh.a": weights(2, 2)})
    save_st("zoo/sharded/s2.safetensors", {"sh.b": weights(2, 2)})
    write_index("zoo/sharded/model.safetensors.index.json", {"sh.a": "s1.safetensors", "sh.b": "s2.safetensors"})
    Path("zoo/README.md").write_text("models")
    Path("zoo/.cache/skip").mkdir(parents=True)
    save_st("zoo/.cache/skip/hidden.safetensors", {"hidden": weights(2, 2)})

    report = check("zoo")
    by_name = {r.name: r.file for r in report.records}
    assert by_name == {
        "bert.w": "zoo/bert/model.safetensors",
        "gpt.w": "zoo/gpt/pytorch_model.bin",
        "deep.w": "zoo/deep/er/still/x.safetensors",
        "sh.a": "zoo/sharded/s1.safetensors",
        "sh.b": "zoo/sharded/s2.safetensors",
    }
    assert only(report, "WL100").file == "zoo/bert/model.safetensors"
    assert only(report, "WL501").location == {"rows": [3], "columns": []}
    assert findings(report, "WL006") == []


def training_arguments() -> argparse.Namespace:
    """Trainer state as older scripts pickle it (rxnmapper's training_args.bin holds one): a plain
    container of values, known to be inert."""
    return argparse.Namespace(learning_rate=5e-5, output_dir="out")


def test_hf_trainer_checkpoint_folder_skips_trainer_state():
    save_pt("checkpoint-500/pytorch_model.bin", {"bert.w": weights(3, 3), "bert.b": weights(3)})
    save_pt("checkpoint-500/training_args.bin", training_arguments())
    save_pt("checkpoint-500/optimizer.pt", {"state": {0: {"exp_avg": torch.full((3, 3), NAN)}},
                                            "param_groups": [{"lr": 0.1, "params": [0]}]})
    save_pt("checkpoint-500/scheduler.pt", {"last_epoch": 3})
    save_pt("checkpoint-500/rng_state.pth", {"cpu": torch.get_rng_state()})
    Path("checkpoint-500/trainer_state.json").write_text("{}")

    report = check("checkpoint-500")
    assert [(r.name, r.file) for r in report.records] == [("bert.w", "checkpoint-500/pytorch_model.bin"),
                                                          ("bert.b", "checkpoint-500/pytorch_model.bin")]
    assert report.findings == []
    assert report.exit_code == ExitCode.OK
    assert len(report.notes) == 2
    for name in ("optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin"):
        assert name in report.notes[0]
    # Its globals were scanned: inert trainer state is a note, not a finding.
    assert report.notes[1].startswith("checkpoint-500/training_args.bin: pickles argparse.Namespace")

    # Named explicitly, trainer state is linted like any other pickle: its inert class is a note.
    explicit = check("checkpoint-500/training_args.bin")
    assert [(f.code, f.severity) for f in explicit.findings] == [("WL002", Severity.INFO)]
    assert "argparse.Namespace" in explicit.findings[0].message


def test_trainer_run_folder_recurses_into_checkpoints():
    save_pt("run/training_args.bin", training_arguments())
    save_st("run/checkpoint-100/model.safetensors", {"w": with_zero_row(weights(3, 3), 1)})
    report = check("run")
    assert [(r.name, r.file) for r in report.records] == [("w", "run/checkpoint-100/model.safetensors")]
    assert [(f.code, f.location) for f in report.findings] == [("WL501", {"rows": [1], "columns": []})]


def test_empty_folder_has_nothing_to_check():
    Path("empty").mkdir()
    Path("empty/README.md").write_text("no weights here")
    report = check("empty")
    assert report.records == []
    assert report.findings == []
    assert report.exit_code == ExitCode.NO_TENSORS


# -- several paths, GPT-2 Conv1D layout, NaN statistics -------------------------------------------

def test_several_paths_in_one_call():
    save_st("a.safetensors", {"a.weight": with_nan(weights(3, 4), (2, 1))})
    save_pt("b.bin", {"b.weight": with_zero_column(weights(5, 3), 0)})
    save_pt("c.ckpt", {"state_dict": {"c.weight": with_zero_row(weights(3, 3), 1)}, "epoch": 1})
    save_pt("d.pt", {"d.weight": with_nan(weights(2, 2), (1, 0))}, _use_new_zipfile_serialization=False)
    report = check("a.safetensors", "b.bin", "c.ckpt", "d.pt")

    assert report.paths == ["a.safetensors", "b.bin", "c.ckpt", "d.pt"]
    assert {r.name: r.file for r in report.records} == {
        "a.weight": "a.safetensors", "b.weight": "b.bin", "c.weight": "c.ckpt", "d.weight": "d.pt"}
    assert sorted(report.model()["format"]) == ["pytorch", "safetensors"]
    got = sorted((f.code, f.file, f.tensor, json.dumps(f.location)) for f in report.findings)
    assert got == [
        ("WL100", "a.safetensors", "a.weight", json.dumps({"index": [2, 1]})),
        ("WL100", "d.pt", "d.weight", json.dumps({"index": [1, 0]})),
        ("WL501", "b.bin", "b.weight", json.dumps({"rows": [], "columns": [0]})),
        ("WL501", "c.ckpt", "c.weight", json.dumps({"rows": [1], "columns": []})),
    ]
    assert report.exit_code == ExitCode.FINDINGS


def test_several_paths_mixing_files_and_objects():
    save_st("a.safetensors", {"a.weight": weights(2, 2)})
    report = check("a.safetensors", {"mem.weight": with_zero_row(weights(3, 2), 2)})
    assert {r.name for r in report.records} == {"a.weight", "mem.weight"}
    assert only(report, "WL501").tensor == "mem.weight"


def test_gpt2_conv1d_names_stored_in_out():
    # GPT-2: c_fc maps 4 → 16 and is stored (in=4, out=16); c_proj maps 16 → 4, stored (16, 4).
    c_fc = weights(4, 16)
    c_fc[:, 5] = 0  # stored column 5 = output unit 5
    c_proj = weights(16, 4, seed=1)
    c_proj[9] = 0  # stored row 9 = input feature 9
    save_st("gpt2.safetensors", {
        "h.0.mlp.c_fc.weight": c_fc, "h.0.mlp.c_fc.bias": weights(16),
        "h.0.mlp.c_proj.weight": c_proj,
        "h.0.attn.c_attn.weight": weights(4, 12, seed=2),
        "wte.weight": with_zero_row(weights(20, 4), 11),  # Embedding, (vocab, dim): row 11 is a row
    })
    report = check("gpt2.safetensors")

    fc = only(report, "WL501", "h.0.mlp.c_fc.weight")
    assert fc.location == {"rows": [5], "columns": []}
    assert "output units" in fc.message
    proj = only(report, "WL501", "h.0.mlp.c_proj.weight")
    assert proj.location == {"rows": [], "columns": [9]}
    wte = only(report, "WL501", "wte.weight")
    assert wte.location == {"rows": [11], "columns": []}
    assert findings(report, "WL501", "h.0.attn.c_attn.weight") == []
    assert report.tensors["h.0.mlp.c_fc.weight"]["layout"] == "in_out"
    assert report.tensors["h.0.mlp.c_fc.weight"]["sparsity"]["zero_rows"] == [5]
    assert "layout" not in report.tensors["wte.weight"]
    assert len(report.findings) == 3


def test_gpt2_conv1d_in_pickle_too():
    c_attn = weights(4, 12)
    c_attn[:, 0] = 0
    c_attn[:, 11] = 0
    save_pt("gpt2.bin", {"transformer.h.0.attn.c_attn.weight": c_attn})
    report = check("gpt2.bin")
    assert only(report, "WL501").location == {"rows": [0, 11], "columns": []}


def test_norms_of_a_tensor_with_nan_describe_finite_values():
    tensor = weights(6, 5) - 1.0  # mixed signs
    tensor[0, 0] = NAN
    tensor[3, 2] = NAN
    tensor[5, 4] = float("inf")
    save_st("n.safetensors", {"x.weight": tensor})
    report = check("n.safetensors")

    finite = tensor.numpy().astype(np.float64)
    finite = finite[np.isfinite(finite)]
    assert finite.size == 27
    norms = report.tensors["x.weight"]["norms"]
    expected = {
        "l2": float(np.sqrt(np.sum(finite**2))),
        "rms": float(np.sqrt(np.mean(finite**2))),
        "max_abs": float(np.max(np.abs(finite))),
        "mean_abs": float(np.mean(np.abs(finite))),
        "mean": float(np.mean(finite)),
        "std": float(np.std(finite)),
    }
    for key, value in expected.items():
        assert math.isfinite(norms[key]), key
        assert norms[key] == pytest.approx(value, rel=1e-6), key
    assert norms["finite_only"] is True

    finite_group = report.tensors["x.weight"]["finite"]
    assert finite_group["nan_count"] == 2
    assert finite_group["posinf_count"] == 1
    assert finite_group["first_nonfinite_index"] == [0, 0]
    nan = only(report, "WL100")
    assert nan.value == 3
    assert nan.location == {"index": [0, 0]}


def test_norms_without_nan_match_numpy():
    tensor = weights(4, 3, seed=5) - 1.0
    report = check({"w": tensor})
    values = tensor.numpy().astype(np.float64).reshape(-1)
    norms = report.tensors["w"]["norms"]
    assert norms["l2"] == pytest.approx(float(np.linalg.norm(values)), rel=1e-6)
    assert norms["std"] == pytest.approx(float(np.std(values)), rel=1e-6)
    assert "finite_only" not in norms


# -- command line ---------------------------------------------------------------------------------

def test_cli_json_on_sharded_folder_and_pickle(cli, tmp_path):
    shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    save_st(f"llm/{shard1}", {"embed.weight": with_nan(weights(8, 4), (5, 2)), "pos": torch.arange(8)})
    save_st(f"llm/{shard2}", {"h.0.mlp.c_fc.weight": with_zero_column(weights(4, 8), 3)})
    write_index("llm/model.safetensors.index.json",
                {"embed.weight": shard1, "pos": shard1, "h.0.mlp.c_fc.weight": shard2})
    save_pt("extra.ckpt", {"state_dict": {"module.x": weights(2, 2)}, "epoch": 3})

    result = cli("llm", "extra.ckpt", "--format", "json", *CLI_SELECT, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert sorted(document["tensors"]) == ["embed.weight", "h.0.mlp.c_fc.weight", "module.x", "pos"]
    assert document["tensors"]["pos"]["judged"] is False
    assert document["tensors"]["embed.weight"]["file"] == f"llm/{shard1}"
    assert document["tensors"]["h.0.mlp.c_fc.weight"]["sparsity"]["zero_rows"] == [3]
    got = sorted((f["code"], f["severity"], f["file"], f["tensor"], json.dumps(f["location"]))
                 for f in document["findings"])
    assert got == [
        ("WL100", "error", f"llm/{shard1}", "embed.weight", json.dumps({"index": [5, 2]})),
        ("WL501", "info", f"llm/{shard2}", "h.0.mlp.c_fc.weight", json.dumps({"rows": [3], "columns": []})),
    ]
    assert document["summary"]["exit_code"] == 1
    assert document["model"]["tensor_count"] == 4
