"""Giant tensors in row blocks (weightlint/stats/blocked.py): the same statistics as the whole-tensor
computation, in memory bounded by a few blocks.

The blocks are made small here (``BLOCK_VALUES``) so that a few-megabyte tensor spans many of them."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightlint.stats.blocked as blocked
from weightlint import sketches
from weightlint import check
from weightlint.reporters import json_report
from weightlint.record import TensorRecord
from weightlint.sources import source_for_file
from weightlint.stats import BlockedTensorStats, TensorStats

GROUPS = ("finite", "norms", "sparsity", "precision", "spectral", "dispersion", "quantization", "sketch",
          "fingerprint", "content_hash")
# Statistics from singular values: the whole computation's float32 Gram matrix is accurate to ~1e-5
# relative for these spectra; the blocked one sums its blocks' Gram matrices in float64.
SPECTRAL_TOLERANCE = 1e-4
SUM_TOLERANCE = 1e-6


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits (round to nearest even), as uint16."""
    bits = values.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write_bf16(path, name: str, values: np.ndarray) -> None:
    raw = bf16(values).tobytes()
    header = json.dumps({name: {"dtype": "BF16", "shape": list(values.shape), "data_offsets": [0, len(raw)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw)


def trained_like(rng, rows: int, columns: int) -> np.ndarray:
    scale = 0.02 * (1 + 4 / np.sqrt(np.arange(1, rows + 1)))[:, None]
    matrix = rng.standard_normal((rows, columns)) * scale + 0.01 * rng.standard_normal((rows, 8)) @ rng.standard_normal((8, columns))
    matrix[:, :3] *= 8
    return matrix.astype(np.float32)


def ill_conditioned(rng, rows: int, columns: int) -> np.ndarray:
    """σ from 1 down to 1e-8: past the Gram route's reach, so the exact route (TSQR) runs."""
    u, _ = np.linalg.qr(rng.standard_normal((rows, columns)))
    v, _ = np.linalg.qr(rng.standard_normal((columns, columns)))
    return (u * np.logspace(0, -8, columns)) @ v.T


def planted(rng, kind: str) -> np.ndarray:
    if kind == "nonfinite":
        matrix = trained_like(rng, 2048, 256)
        matrix[5] = 0
        matrix[:, 7] = 0
        matrix[1500, 9], matrix[100, 1] = np.nan, -np.inf
        return matrix
    if kind == "long-rows-nonfinite":
        matrix = trained_like(rng, 6, 40000)
        matrix[2] = 0
        matrix[:, 39999] = 0
        matrix[4, 30001] = np.nan
        return matrix
    if kind == "zero-lines":
        matrix = trained_like(rng, 2048, 256)
        matrix[[5, 1999]] = 0
        matrix[:, 7] = 0
        return matrix
    return {"tall": lambda: trained_like(rng, 4096, 256), "wide": lambda: trained_like(rng, 256, 4096),
            "square": lambda: trained_like(rng, 1024, 1024),
            "conv": lambda: trained_like(rng, 256, 1152).reshape(256, 128, 3, 3),
            "long-rows": lambda: trained_like(rng, 6, 40000),  # rows longer than a block: pieces of rows
            "ill-conditioned": lambda: ill_conditioned(rng, 2048, 128).astype(np.float32),
            "float64": lambda: ill_conditioned(rng, 2048, 128),
            "zeros": lambda: np.zeros((2048, 256), dtype=np.float32)}[kind]()


def record_of(path, layout: str | None = None) -> TensorRecord:
    record = next(item for item in source_for_file(str(path)).items() if isinstance(item, TensorRecord))
    record.layout = layout
    return record


def assert_same(whole, parts, where: str = "", floor: float = 0.0) -> None:
    """Equal, with the tolerances above for floating-point results of sums and spectra (a list's
    entries, such as an eigenvalue histogram's edges, relative to its largest)."""
    if isinstance(whole, dict):
        assert set(whole) == set(parts), where
        for key in whole:
            assert_same(whole[key], parts[key], f"{where}.{key}")
    elif isinstance(whole, list):
        assert len(whole) == len(parts), where
        largest = max((abs(x) for x in whole if isinstance(x, float) and math.isfinite(x)), default=0.0)
        for index, (a, b) in enumerate(zip(whole, parts)):
            assert_same(a, b, f"{where}[{index}]", floor=largest)
    elif isinstance(whole, float) and isinstance(parts, float) and not (math.isnan(whole) and math.isnan(parts)):
        spectral = where.startswith((".spectral", ".sketch.esd"))
        # A mean is a sum that cancels: compare it with the values' scale instead of with itself.
        scale = 1.0 if where.endswith(".mean") else max(abs(whole), abs(parts), floor)
        tolerance = SPECTRAL_TOLERANCE if spectral else SUM_TOLERANCE
        assert abs(whole - parts) <= tolerance * scale, f"{where}: whole {whole}, blocked {parts}"
    else:
        assert whole == parts, f"{where}: whole {whole}, blocked {parts}"


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64k values: a few-megabyte tensor spans many."""
    monkeypatch.setattr(blocked, "BLOCK_VALUES", 1 << 16)


@pytest.mark.parametrize("kind", ["tall", "wide", "square", "conv", "nonfinite", "zero-lines", "ill-conditioned",
                                  "float64", "zeros", "long-rows", "long-rows-nonfinite"])
@pytest.mark.parametrize("random_access", [True, False], ids=["ranges", "passes"])
def test_blocked_statistics_equal_the_whole_computation(tmp_path, monkeypatch, kind, random_access):
    """Column panels of wide matrices read where they lie (``record.ranges``) or gathered in passes."""
    monkeypatch.setattr(blocked, "BLOCK_VALUES", 1 << 16 if "long-rows" not in kind else 12_345)
    values = planted(np.random.default_rng(3), kind)
    path = tmp_path / f"{kind}.safetensors"
    save_file({"layer.weight": values}, str(path))
    whole_stats = TensorStats(record_of(path))
    whole = {group: getattr(whole_stats, group) for group in GROUPS}
    record = record_of(path)
    if not random_access:
        record.ranges = None
    parts_stats = BlockedTensorStats(record)
    assert parts_stats.whole_rows == ("long-rows" not in kind)
    parts_stats.read()
    parts = {group: getattr(parts_stats, group) for group in GROUPS}
    assert "values" not in parts_stats.__dict__  # never held whole
    assert_same(whole, parts)
    if kind == "nonfinite":
        assert parts["finite"]["first_nonfinite_index"] == [100, 1]
        assert parts["sparsity"]["zero_rows"] == [5] and parts["sparsity"]["zero_columns"] == [7]
    if kind == "long-rows-nonfinite":
        assert parts["finite"]["first_nonfinite_index"] == [4, 30001]
        assert parts["sparsity"]["zero_rows"] == [2] and parts["sparsity"]["zero_columns"] == [39999]


@pytest.mark.parametrize("shape", [(3072, 384), (384, 3072), (4, 50000)])
def test_bfloat16_in_out_layout_and_order_statistics(tmp_path, small_blocks, shape):
    """A bf16 matrix stored (in, out), as GPT-2's Conv1D: per-channel scales run along stored columns."""
    path = tmp_path / "conv1d.safetensors"
    write_bf16(path, "h.0.attn.c_attn.weight", trained_like(np.random.default_rng(4), *shape))
    whole_stats = TensorStats(record_of(path, "in_out"))
    parts_stats = BlockedTensorStats(record_of(path, "in_out"))
    parts = {group: getattr(parts_stats, group) for group in GROUPS}
    assert_same({group: getattr(whole_stats, group) for group in GROUPS}, parts)
    assert parts["quantization"]["outlier_center"] == whole_stats.quantization["outlier_center"]  # exact: a median


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_radix_selection_is_exact(dtype):
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.standard_normal(50_000), np.zeros(300), -np.zeros(200), np.full(100, 1e-42),
                             rng.integers(-3, 3, 5000).astype(float), [np.inf, -np.inf]]).astype(dtype)
    rng.shuffle(values)
    kth = [0, 1, 777, len(values) // 2 - 1, len(values) // 2, len(values) - 8, len(values) - 1]
    pieces = lambda: iter(np.array_split(values, 13))  # noqa: E731
    expected = np.sort(values)[kth]
    assert blocked.select(pieces, kth, np.dtype(dtype)) == expected.tolist()


def test_blocked_memory_stays_at_a_few_blocks(tmp_path, monkeypatch):
    """Python-tracked peak (NumPy reports its buffers to tracemalloc) while every group is computed
    for a 4M-value float32 tensor (16 MB): the whole computation needs at least two copies of it."""
    monkeypatch.setattr(blocked, "BLOCK_VALUES", 1 << 18)
    monkeypatch.setattr(blocked, "SELECT_PIECE_VALUES", 1 << 16)
    monkeypatch.setattr(sketches, "HISTOGRAM_PIECE_VALUES", 1 << 16)
    path = tmp_path / "big.safetensors"
    save_file({"w": trained_like(np.random.default_rng(6), 16384, 256)}, str(path))
    tensor_bytes = 16384 * 256 * 4

    def peak(stats) -> int:
        tracemalloc.start()
        for group in GROUPS:
            getattr(stats, group)
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes

    whole, parts = peak(TensorStats(record_of(path))), peak(BlockedTensorStats(record_of(path)))
    assert whole >= 2 * tensor_bytes
    assert parts < tensor_bytes / 2, f"blocked peak {parts / 2**20:.1f} MiB for a {tensor_bytes / 2**20:.0f} MiB tensor"


def test_a_giant_tensor_is_checked_in_blocks_with_the_same_report(tmp_path, monkeypatch, small_blocks):
    """End to end: the same findings and statistics, and the tensor is never loaded whole."""
    path = tmp_path / "model.safetensors"
    values = trained_like(np.random.default_rng(7), 4096, 512)
    values[10] = 0  # a dead row: WL-findings to compare
    values[20, 30] = 300.0  # an outlier
    save_file({"model.embed_tokens.weight": values, "model.norm.weight": np.ones(512, dtype=np.float32)}, str(path))
    whole = json.loads(json_report.render(check(str(path))))
    monkeypatch.setattr(blocked, "WHOLE_TENSOR_VALUES", 1 << 20)
    loads = []
    original = TensorStats.load_values
    monkeypatch.setattr(TensorStats, "load_values",
                        staticmethod(lambda record, device="cpu": loads.append(record.name) or original(record, device)))
    for jobs in (1, 2):
        loads.clear()
        parts = json.loads(json_report.render(check(str(path), jobs=jobs)))
        assert "model.embed_tokens.weight" not in loads and "model.norm.weight" in loads
        assert [(f["code"], f["tensor"]) for f in parts["findings"]] == [(f["code"], f["tensor"]) for f in whole["findings"]]
        assert whole["findings"], "the planted defects should be found"
        for name in whole["tensors"]:
            assert_same(whole["tensors"][name], parts["tensors"][name])


def test_diff_and_watch_of_giant_matrices_never_load_them_whole(tmp_path, monkeypatch, small_blocks):
    """The exact diff (with spectra) and watch's summaries take a giant matrix's spectra from row
    blocks and its change from chunks: the same statistics as whole, and no whole load."""
    from weightlint.config import Config
    from weightlint.diff.engine import diff
    from weightlint.diff.watch import Watch

    rng = np.random.default_rng(8)
    values = trained_like(rng, 4096, 256)
    for step in (100, 200, 300):
        values = values * 1.01 + rng.standard_normal(values.shape).astype(np.float32) * 1e-3
        (tmp_path / f"checkpoint-{step}").mkdir()
        save_file({"model.embed_tokens.weight": values}, str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    old, new = str(tmp_path / "checkpoint-100"), str(tmp_path / "checkpoint-200")
    whole_diff = diff(old, new).tensors["model.embed_tokens.weight"]["diff"]
    whole_watch = Watch([str(tmp_path)], Config(), spectra=True).run().tensors["model.embed_tokens.weight"]["diff"]
    monkeypatch.setattr(blocked, "WHOLE_TENSOR_VALUES", 1 << 18)
    loads = []
    original = TensorStats.load_values
    monkeypatch.setattr(TensorStats, "load_values",
                        staticmethod(lambda record, device="cpu": loads.append(record.name) or original(record, device)))
    parts_diff = diff(old, new).tensors["model.embed_tokens.weight"]["diff"]
    parts_watch = Watch([str(tmp_path)], Config(), spectra=True).run().tensors["model.embed_tokens.weight"]["diff"]
    assert loads == []
    assert "condition_number_ratio" in parts_diff and "new_condition_number" in parts_watch
    for whole, parts in ((whole_diff, parts_diff), (whole_watch, parts_watch)):
        assert whole.keys() == parts.keys()
        for key, value in whole.items():
            if isinstance(value, float):
                assert parts[key] == pytest.approx(value, rel=SPECTRAL_TOLERANCE), key
            else:
                assert parts[key] == value, key


def test_a_file_cut_between_passes_is_wl001(tmp_path, monkeypatch, small_blocks):
    """A giant tensor's file that fails on a later pass (truncated, removed) is the file's problem,
    WL001, as when its first read fails, not an internal error."""
    from weightlint.sources import safetensors_file

    path = tmp_path / "model.safetensors"
    save_file({"model.embed_tokens.weight": trained_like(np.random.default_rng(9), 4096, 256)}, str(path))
    monkeypatch.setattr(blocked, "WHOLE_TENSOR_VALUES", 1 << 18)
    passes = []
    read_chunks = safetensors_file.read_chunks

    def failing_later(*arguments):
        passes.append(1)
        if len(passes) >= 3:
            raise EOFError("unexpected end of file at byte 123")
        yield from read_chunks(*arguments)

    monkeypatch.setattr(safetensors_file, "read_chunks", failing_later)
    report = check(str(path), select=["ALL"])
    assert [(f.code, f.tensor) for f in report.findings] == [("WL001", "model.embed_tokens.weight")]
    assert "unexpected end of file" in report.findings[0].message and len(passes) >= 3


def test_a_giant_pair_with_one_side_in_a_pickle_keeps_its_spectra(tmp_path, monkeypatch, small_blocks):
    """The old side read in chunks (safetensors), the new one only whole (a PyTorch pickle): the
    pair is compared whole, spectra included, as any pair without chunks on both sides."""
    import torch

    from weightlint.diff.engine import diff

    values = trained_like(np.random.default_rng(10), 4096, 256)
    save_file({"w.weight": values}, str(tmp_path / "old.safetensors"))
    torch.save({"w.weight": torch.from_numpy(values * 1.01)}, tmp_path / "new.pt")
    expected = diff(str(tmp_path / "old.safetensors"), str(tmp_path / "new.pt")).tensors["w.weight"]["diff"]
    monkeypatch.setattr(blocked, "WHOLE_TENSOR_VALUES", 1 << 18)
    changed = diff(str(tmp_path / "old.safetensors"), str(tmp_path / "new.pt")).tensors["w.weight"]["diff"]
    assert "condition_number_ratio" in changed
    assert changed == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("store", ["bf16", "float32", "float64"])
def test_a_large_tensor_goes_to_a_device_chunk_by_chunk(tmp_path, monkeypatch, store):
    """On a GPU a large tensor is copied over in chunks (host memory: one chunk); the copy equals
    the whole load. Run here on the CPU device with PyTorch, in CUDA by tests/test_cuda.py."""
    import torch

    from weightlint.stats import tensor as tensor_stats

    monkeypatch.setattr(tensor_stats, "DEVICE_STREAM_CHUNK", 1000)  # chunks that split rows
    path = tmp_path / "m.safetensors"
    values = trained_like(np.random.default_rng(11), 300, 70)
    if store == "bf16":
        write_bf16(path, "w.weight", values)
    else:
        save_file({"w.weight": values.astype(store)}, str(path))
    record = record_of(path)
    streamed = tensor_stats.stream_to_device(record, "cpu")
    expected = TensorStats.load_values(record, "cpu")
    assert streamed.dtype == (torch.float64 if store == "float64" else torch.float32)
    assert tuple(streamed.shape) == (300, 70)
    np.testing.assert_array_equal(streamed.numpy(), expected)
