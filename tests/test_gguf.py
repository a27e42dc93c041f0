"""GGUF files written by the ``gguf`` package's own writer: float and quantized tensors, metadata,
truncation, unsupported types. Dequantized values are compared with the package's dequantization.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import weightlint
from weightlint import ExitCode, Severity

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QuantType  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

from weightlint.sources import GGUFSource, resolve  # noqa: E402

SELECT = ["WL001", "WL007", "WL100", "WL501"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def check(*targets, **settings):
    settings.setdefault("select", SELECT)
    settings.setdefault("device", "cpu")
    return weightlint.check(*targets, **settings)


def values(rows: int, cols: int, seed: int) -> np.ndarray:
    """(out, in) weights in PyTorch order; no zeros, nothing non-finite."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, cols)) * 0.1 + np.sign(rng.standard_normal((rows, cols))) * 0.05).astype(np.float32)


# Tensor name → (PyTorch-order array, storage type). Q4_0/Q8_0 rows must be multiples of 32.
TENSORS = {
    "token_embd.weight": (values(16, 64, 0), QuantType.F32),
    "blk.0.attn_q.weight": (values(64, 64, 1), QuantType.F16),
    "blk.0.ffn_up.weight": (values(96, 64, 2), QuantType.Q8_0),
    "blk.0.ffn_down.weight": (values(64, 96, 3), QuantType.Q4_0),
    "blk.0.attn_norm.weight": (np.abs(values(1, 64, 4))[0] + 1, QuantType.F32),
}


def write_gguf(path: str, tensors: dict | None = None, name: str = "tiny-test", extra=None) -> str:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    writer.add_context_length(128)
    for tensor_name, (array, kind) in (tensors or TENSORS).items():
        if kind == QuantType.F32:
            writer.add_tensor(tensor_name, array.astype(np.float32))
        elif kind == QuantType.F16:
            writer.add_tensor(tensor_name, array.astype(np.float16))
        else:
            writer.add_tensor(tensor_name, quantize(array, kind), raw_dtype=kind)
    for tensor_name, raw, kind in extra or ():
        writer.add_tensor(tensor_name, raw, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_float_and_quantized_tensors_match_the_package_dequantization():
    path = write_gguf("tiny.gguf")
    report = check(path)
    assert report.findings == []
    assert report.exit_code == ExitCode.OK
    assert report.model()["format"] == "gguf"
    records = {record.name: record for record in report.records}
    assert list(records) == list(TENSORS)

    reader = gguf.GGUFReader(path)
    stored = {tensor.name: tensor for tensor in reader.tensors}
    for name, (array, kind) in TENSORS.items():
        record = records[name]
        assert record.shape == array.shape, name  # PyTorch order (out, in), not GGUF's (in, out)
        assert stored[name].tensor_type == kind
        assert record.metadata["gguf_type"] == kind.name
        loaded = record.load()
        assert tuple(loaded.shape) == array.shape
        expected = dequantize(stored[name].data, kind).reshape(array.shape)
        # Every float type loads as NumPy float32 (exact widening), without torch.
        assert isinstance(loaded, np.ndarray) and loaded.dtype == np.float32
        if kind in (QuantType.F32, QuantType.F16):
            assert record.dtype == ("float32" if kind == QuantType.F32 else "float16")
            np.testing.assert_array_equal(loaded, array.astype(np.float16 if kind == QuantType.F16 else np.float32))
        else:
            assert record.dtype == "float32"
            assert record.metadata["quantized"] is True
            np.testing.assert_array_equal(loaded, expected)
            # the quantization error is small but real: these are dequantized values, not the originals
            assert 0 < np.abs(loaded - array).max() < 0.05
    assert report.tensors["blk.0.ffn_down.weight"]["shape"] == [64, 96]
    assert any("2 quantized tensors (Q4_0 ×1, Q8_0 ×1) were dequantized" in note for note in report.notes)


def test_records_are_lazy_one_tensor_at_a_time(monkeypatch):
    from weightlint.sources import gguf_file

    reads = []
    real = gguf_file.read_bytes
    monkeypatch.setattr(gguf_file, "read_bytes", lambda *where: reads.append(where[1:]) or real(*where))
    (source,) = resolve(write_gguf("lazy.gguf"))
    assert isinstance(source, GGUFSource)
    records = list(source.items())
    assert len(records) == len(TENSORS)
    assert reads == []  # listing the file reads no tensor data
    loaded = records[3].load()  # Q4_0: read its blocks, dequantize
    stored = {tensor.name: tensor for tensor in gguf.GGUFReader("lazy.gguf").tensors}["blk.0.ffn_down.weight"]
    assert reads == [(int(stored.data_offset), int(stored.n_bytes))]
    assert loaded.shape == (64, 96)


def test_nan_in_an_f32_tensor_is_reported_with_its_gguf_name():
    tensors = dict(TENSORS)
    poisoned = TENSORS["token_embd.weight"][0].copy()
    poisoned[5, 17] = np.nan
    tensors["token_embd.weight"] = (poisoned, QuantType.F32)
    report = check(write_gguf("nan.gguf", tensors))
    (finding,) = report.findings
    assert (finding.code, finding.severity) == ("WL100", Severity.ERROR)
    assert (finding.tensor, finding.file) == ("token_embd.weight", "nan.gguf")
    assert finding.location == {"index": [5, 17]}  # row/column in PyTorch order
    assert report.exit_code == ExitCode.FINDINGS


def test_dead_row_in_a_quantized_tensor_survives_dequantization():
    dead = TENSORS["blk.0.ffn_up.weight"][0].copy()
    dead[7] = 0
    report = check(write_gguf("dead.gguf", {"blk.0.ffn_up.weight": (dead, QuantType.Q8_0)}))
    (finding,) = report.findings
    assert (finding.code, finding.tensor, finding.location) == ("WL501", "blk.0.ffn_up.weight", {"rows": [7], "columns": []})


def test_truncated_gguf_is_unreadable():
    data = Path(write_gguf("full.gguf")).read_bytes()
    Path("truncated.gguf").write_bytes(data[:-1000])
    report = check("truncated.gguf")
    (finding,) = report.findings
    assert (finding.code, finding.file, finding.tensor) == ("WL001", "truncated.gguf", None)
    assert finding.message.startswith("not a valid GGUF file: truncated")
    assert "blk.0.ffn_down.weight" in finding.message or "cut off" in finding.message
    assert report.records == []
    assert report.exit_code == ExitCode.FINDINGS


def test_gguf_cut_inside_the_header_is_unreadable():
    data = Path(write_gguf("full.gguf")).read_bytes()
    Path("header.gguf").write_bytes(data[:40])
    (finding,) = check("header.gguf").findings
    assert finding.code == "WL001"
    assert "truncated: the header runs past the end of the file" in finding.message


def test_unsupported_quantization_is_info_and_the_rest_is_checked():
    block, type_size = gguf.GGML_QUANT_SIZES[QuantType.Q8_1]
    raw = np.zeros((4, 2 * type_size), dtype=np.uint8)  # 4 rows of 2 blocks = (4, 64) values
    report = check(write_gguf("mixed.gguf", extra=[("blk.0.odd.weight", raw, QuantType.Q8_1)]))
    (finding,) = report.findings
    assert (finding.code, finding.rule, finding.severity) == ("WL007", "unsupported-tensor", Severity.INFO)
    assert (finding.tensor, finding.file) == ("blk.0.odd.weight", "mixed.gguf")
    assert "Q8_1" in finding.message
    assert finding.extra["shape"] == [4, 2 * block]
    assert len(report.records) == len(TENSORS)
    assert report.exit_code == ExitCode.OK


def test_bf16_is_read_without_conversion():
    array = values(8, 32, 9)
    report = check(write_gguf("bf16.gguf", {"w": (array, QuantType.BF16)}))
    (record,) = report.records
    assert record.dtype == torch.bfloat16 and record.dtype_name == "bfloat16"
    loaded = record.load()  # the raw 16 bits widened to float32: exactly torch's bfloat16 values
    assert loaded.dtype == np.float32 and tuple(loaded.shape) == (8, 32)
    np.testing.assert_array_equal(loaded, torch.from_numpy(array).to(torch.bfloat16).float().numpy())


def test_metadata_in_the_json_report(cli):
    write_gguf("model.gguf")
    result = cli("model.gguf", "--format", "json", "--select", ",".join(SELECT), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["model"]["format"] == "gguf"
    (source,) = document["model"]["sources"]
    header = source["gguf"]
    assert (header["architecture"], header["name"], header["file_type"]) == ("llama", "tiny-test", "Q4_0")
    assert header["tensor_count"] == len(TENSORS)
    assert header["metadata"]["llama.context_length"] == 128
    assert header["tensor_types"] == {name: kind.name for name, (_, kind) in TENSORS.items()}
    assert header["type_counts"] == {"F16": 1, "F32": 2, "Q4_0": 1, "Q8_0": 1}
    assert document["tensors"]["blk.0.ffn_up.weight"]["shape"] == [96, 64]


def test_folder_with_a_gguf_file_and_magic_sniffing():
    Path("llm").mkdir()
    write_gguf("llm/model-q4.gguf")
    report = check("llm")
    assert {record.file for record in report.records} == {"llm/model-q4.gguf"}
    Path("renamed.bin.q4").write_bytes(Path("llm/model-q4.gguf").read_bytes())  # GGUF magic, odd suffix
    assert check("renamed.bin.q4").model()["format"] == "gguf"


def test_int8_advice_is_not_given_for_tensors_already_stored_quantized(tmp_path):
    """A Q8_0 tensor already is its quantized self: WL201/WL202 judge the float copy only."""
    rng = np.random.default_rng(7)
    weight = rng.normal(0, 0.02, (256, 512)).astype(np.float32)
    heavy = rng.random(weight.shape) < 0.02
    weight[heavy] = np.sign(weight[heavy]) * 0.12
    weight[np.arange(256), rng.integers(0, 512, 256)] = 4.0  # one 200σ value per row: int8 loses the row
    tensors = {"blk.0.ffn_up.weight": (weight, QuantType.F32), "blk.1.ffn_up.weight": (weight, QuantType.Q8_0)}
    report = weightlint.check(write_gguf(str(tmp_path / "m.gguf"), tensors), select=["WL201", "WL202"])
    assert {(f.code, f.tensor) for f in report.findings} == {
        ("WL201", "blk.0.ffn_up.weight"), ("WL202", "blk.0.ffn_up.weight")}


@pytest.mark.parametrize("rows_per_chunk", [1, 5, 1000])
def test_chunks_equal_the_whole_tensor_for_every_storage_type(rows_per_chunk):
    """Giant tensors are read in chunks of whole rows (weightlint/stats/blocked.py): float types
    decoded as they are stored, quantized ones dequantized a few rows at a time."""
    path = write_gguf("tiny.gguf")
    source = resolve(path)[0]
    for record in source.items():
        assert record.chunks is not None, record.name
        columns = record.shape[-1]
        pieces = [chunk.copy() for chunk in record.chunks(rows_per_chunk * columns)]
        assert all(piece.size <= max(rows_per_chunk, 1) * columns for piece in pieces)
        np.testing.assert_array_equal(np.concatenate(pieces).reshape(record.shape), record.load(), err_msg=record.name)


def test_a_giant_quantized_tensor_is_checked_in_blocks_with_the_same_statistics(monkeypatch):
    import weightlint.stats.blocked as blocked

    tensors = {"token_embd.weight": (values(2048, 256, 9), QuantType.Q8_0)}
    path = write_gguf("giant.gguf", tensors)
    whole = check(path, select=["ALL"]).tensors["token_embd.weight"]
    monkeypatch.setattr(blocked, "WHOLE_TENSOR_VALUES", 1 << 16)
    monkeypatch.setattr(blocked, "BLOCK_VALUES", 1 << 16)
    from weightlint.stats import TensorStats

    loads = []
    original = TensorStats.load_values
    monkeypatch.setattr(TensorStats, "load_values",
                        staticmethod(lambda record, device="cpu": loads.append(record.name) or original(record, device)))
    parts = check(path, select=["ALL"]).tensors["token_embd.weight"]
    assert loads == []  # never loaded whole
    assert parts["quantization"] == whole["quantization"]
    assert parts["sparsity"] == whole["sparsity"] and parts["finite"] == whole["finite"]
    assert parts["norms"]["l2"] == pytest.approx(whole["norms"]["l2"], rel=1e-7)
    assert parts["spectral"]["sv_max"] == pytest.approx(whole["spectral"]["sv_max"], rel=1e-5)
