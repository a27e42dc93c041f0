"""Per-rule tests on tensors with known ground truth: cases that must trigger and cases that must not.

Each expected value is computed independently in float64 numpy (``tests/groundtruth.py``) from the
definitions in the rules' documentation, then compared with what ``weightlint.check`` reports.
"""

from __future__ import annotations

import math

import groundtruth as gt
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import weightlint
from weightlint import Severity

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The matrices are small: one intra-op thread is fastest, and on a busy 2-core runner OpenMP
    threads spinning against each other made this module ~15x slower. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def lint(tensors: dict, *codes: str, **settings):
    return weightlint.check(tensors, select=list(codes) or ["ALL"], **settings)


def findings(report, code: str | None = None, tensor: str | None = None):
    return [f for f in report.findings
            if (code is None or f.code == code) and (tensor is None or f.tensor == tensor)]


def only(report, code: str, tensor: str):
    """The single finding of ``code``; it must be on ``tensor`` and be the only one of that code."""
    found = findings(report, code)
    assert [f.tensor for f in found] == [tensor], [(f.tensor, f.severity, f.message) for f in found]
    return found[0]


# =============================================================================================
# WL101 ill-conditioned
# =============================================================================================
class TestIllConditioned:
    """The condition number itself under ``profile: guide``; rank collapse by default."""

    @pytest.mark.parametrize("rows, columns", [(96, 160), (160, 96)])
    def test_condition_1e3_passes(self, rows, columns):
        w = gt.tensor(gt.with_condition(rows, columns, 1e3, seed=1))
        report = lint({"m.weight": w}, "WL101", profile="guide")
        assert findings(report) == []
        measured = report.tensors["m.weight"]["spectral"]["condition_number"]
        assert measured == pytest.approx(1e3, rel=1e-4)
        assert measured == pytest.approx(gt.condition_number(gt.stored(w)), rel=1e-6)
        spectral = report.tensors["m.weight"]["spectral"]
        assert spectral["sv_max"] == pytest.approx(1.0, rel=1e-5)
        assert spectral["sv_min"] == pytest.approx(1e-3, rel=1e-4)
        assert spectral["total_rank"] == 96

    @pytest.mark.parametrize("condition, severity, threshold", [
        (2e4, WARNING, 1e4),
        (2e5, ERROR, 1e5),
        (129_498, ERROR, 1e5),  # the guide's GPT-2 h.9.attn.c_proj
    ])
    def test_graded_by_condition(self, condition, severity, threshold):
        w = gt.tensor(gt.with_condition(128, 256, condition, seed=2))
        found = only(lint({"m.weight": w}, "WL101", profile="guide"), "WL101", "m.weight")
        assert found.severity is severity
        assert found.threshold == threshold
        assert found.value == pytest.approx(condition, rel=1e-3)
        assert found.value == pytest.approx(gt.condition_number(gt.stored(w)), rel=1e-5)
        assert "condition number" in found.message

    def test_float64_matrix_above_gram_limit_is_exact(self):
        # Beyond 1e6 a Gram matrix loses σmin; the real SVD must take over.
        w = gt.tensor(gt.with_condition(64, 96, 1e9, seed=3), torch.float64)
        found = only(lint({"m.weight": w}, "WL101", profile="guide"), "WL101", "m.weight")
        assert found.severity is ERROR
        assert found.value == pytest.approx(1e9, rel=1e-3)

    def test_rank_deficient_float64_is_infinite(self):
        s = np.concatenate([np.linspace(1.0, 0.1, 40), np.zeros(24)])  # rank 40 of 64
        w = gt.tensor(gt.with_singular_values(64, 128, s, seed=4), torch.float64)
        report = lint({"m.weight": w}, "WL101", profile="guide")
        found = only(report, "WL101", "m.weight")
        assert found.severity is ERROR
        assert found.value == math.inf
        assert "rank" in found.message and "40 of 64" in found.message
        spectral = report.tensors["m.weight"]["spectral"]
        assert spectral["condition_number"] == math.inf
        assert spectral["numerical_rank"] == 40 and spectral["total_rank"] == 64

    def test_rank_deficient_float32_is_error(self):
        s = np.concatenate([np.linspace(1.0, 0.1, 40), np.zeros(24)])
        w = gt.tensor(gt.with_singular_values(64, 128, s, seed=4), torch.float32)
        report = lint({"m.weight": w}, "WL101", profile="guide")
        found = only(report, "WL101", "m.weight")
        assert found.severity is ERROR
        # float32 rounding leaves σmin at rounding-noise level: huge (or infinite), never small.
        assert found.value > 1e6
        if math.isfinite(found.value):
            assert found.value == pytest.approx(gt.condition_number(gt.stored(w)), rel=1e-3)
        assert report.tensors["m.weight"]["spectral"]["numerical_rank"] == 40

    def test_conv_kernel_is_out_by_in_kh_kw(self):
        matrix = gt.with_condition(32, 8 * 3 * 3, 2e5, seed=5)
        kernel = gt.tensor(matrix.reshape(32, 8, 3, 3))
        report = lint({"conv.weight": kernel}, "WL101", profile="guide")
        found = only(report, "WL101", "conv.weight")
        assert found.severity is ERROR
        assert found.value == pytest.approx(2e5, rel=1e-3)
        spectral = report.tensors["conv.weight"]["spectral"]
        assert spectral["total_rank"] == 32
        # A different flattening (e.g. out·in × kh·kw) would give another spectrum entirely.
        assert spectral["sv_max"] == pytest.approx(1.0, rel=1e-5)

    def test_hf_conv1d_in_out_matches_transpose(self):
        out_in = gt.tensor(gt.with_condition(64, 192, 3e4, seed=6))   # (out, in)
        in_out = out_in.T.contiguous()                                # what Conv1D stores
        report = lint({"h.0.attn.c_proj.weight": in_out, "h.0.mlp.dense.weight": out_in}, "WL101", profile="guide")
        conv1d = only_of(report, "WL101", "h.0.attn.c_proj.weight")
        linear = only_of(report, "WL101", "h.0.mlp.dense.weight")
        assert conv1d.severity is linear.severity is WARNING
        assert conv1d.value == pytest.approx(linear.value, rel=1e-6)
        assert conv1d.value == pytest.approx(3e4, rel=1e-3)
        assert report.tensors["h.0.attn.c_proj.weight"]["layout"] == "in_out"
        assert report.tensors["h.0.attn.c_proj.weight"]["spectral"]["total_rank"] == 64

    @pytest.mark.parametrize("condition", [2e4, 2e5, 1e9])
    def test_default_profile_ignores_a_full_rank_condition_number(self, condition):
        w = gt.tensor(gt.with_condition(64, 96, condition, seed=3), torch.float64)
        report = lint({"m.weight": w}, "WL101")
        assert findings(report) == []
        assert report.tensors["m.weight"]["spectral"]["condition_number"] == pytest.approx(condition, rel=1e-3)

    @pytest.mark.parametrize("rank, reported", [(20, True), (31, True), (32, False), (40, False)])
    def test_default_profile_reports_rank_collapse(self, rank, reported):
        s = np.concatenate([np.linspace(1.0, 0.1, rank), np.zeros(64 - rank)])  # rank of 64
        w = gt.tensor(gt.with_singular_values(64, 128, s, seed=4), torch.float32)
        report = lint({"m.weight": w}, "WL101")
        if not reported:
            assert findings(report) == []
            return
        found = only(report, "WL101", "m.weight")
        assert found.severity is WARNING
        assert found.value == pytest.approx(rank / 64) and found.threshold == 0.5
        assert found.extra["rank_above_noise"] == rank and found.extra["live_rank"] == 64
        assert f"rank collapse: rank {rank} of 64 above rounding noise" in found.message

    def test_one_huge_weight_is_not_a_rank_collapse(self):
        """σmax·max(m, n)·eps would call every other direction noise; rounding cannot produce them."""
        w = gt.gaussian((96, 96), std=0.02, seed=8)
        w[3, 5] = 70_000.0
        report = lint({"m.weight": gt.tensor(w)}, "WL101")
        assert findings(report) == []
        spectral = report.tensors["m.weight"]["spectral"]
        # A square Gaussian's smallest singular values approach 0: a few fall under the spike's noise.
        assert spectral["numerical_rank"] == 1 and spectral["rank_above_noise"] >= 0.9 * 96

    @pytest.mark.parametrize("dtype, unit_roundoff", [(torch.float32, 2.0**-24), (torch.bfloat16, 2.0**-8)])
    def test_the_noise_floor_follows_the_stored_precision(self, dtype, unit_roundoff):
        s = np.concatenate([np.ones(8), np.full(56, 1e-4)])  # 8 directions and a floor at 1e-4
        w = gt.tensor(gt.with_singular_values(64, 128, s, seed=9), dtype)
        spectral = lint({"m.weight": w}, "WL101").tensors["m.weight"]["spectral"]
        stored = gt.singular_values(gt.stored(w))
        expected = int(np.sum(stored > 4 * np.sqrt(np.sum(stored**2)) * unit_roundoff))
        assert spectral["rank_above_noise"] == expected
        assert expected == (64 if dtype == torch.float32 else 8)  # 1e-4 is signal in float32, noise in bf16

    def test_dead_rows_are_not_a_rank_collapse(self):
        w = gt.gaussian((64, 128), seed=7)
        w[:40] = 0.0  # 40 dead units: WL501's finding, the live part is full rank
        report = lint({"m.weight": gt.tensor(w)}, "WL101")
        assert findings(report) == []

    def test_vectors_are_not_judged(self):
        report = lint({"m.bias": torch.tensor([1.0, 1e-9, 3.0])}, "WL101", profile="guide")
        assert findings(report) == []


def only_of(report, code, tensor):
    found = findings(report, code, tensor)
    assert len(found) == 1, found
    return found[0]


# =============================================================================================
# WL102 fp16-overflow
# =============================================================================================
class TestFp16Overflow:
    def test_value_beyond_fp16_range_is_error_with_count(self):
        w = gt.tensor(gt.gaussian((32, 64), seed=7))
        w[3, 5], w[10, 1] = 7e4, -8e4
        report = lint({"m.weight": w}, "WL102")
        found = only(report, "WL102", "m.weight")
        assert found.severity is ERROR
        assert found.value == 2 == int(torch.isinf(w.half()).sum())
        assert "2 values" in found.message

    @pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
    def test_other_wide_dtypes_overflow_too(self, dtype):
        w = gt.tensor(gt.gaussian((16, 16), seed=8), dtype)
        w[0, 0] = 7e4
        found = only(lint({"m.weight": w}, "WL102"), "WL102", "m.weight")
        assert found.severity is ERROR and found.value == 1

    def test_underflow_share_is_warning(self):
        w = gt.tensor(gt.gaussian((40, 50), seed=9))   # 2000 non-zeros
        w.view(-1)[:100] = 1e-9                      # 5% flush to zero in fp16
        found = only(lint({"m.weight": w}, "WL102", rules={"WL102": {"underflow_energy": None}}), "WL102", "m.weight")
        assert found.severity is WARNING
        assert found.value == pytest.approx(5.0, rel=1e-12)
        flushed = int(((w != 0) & (w.half() == 0)).sum())
        assert found.value == pytest.approx(100 * flushed / int((w != 0).sum()), rel=1e-12)

    def test_underflow_share_counts_non_zeros_only(self):
        w = torch.zeros(40, 50)
        w.view(-1)[:100] = 1.0
        w.view(-1)[100:104] = 1e-9            # 4 of 104 non-zeros: 3.8% > 1%
        found = only(lint({"m.weight": w}, "WL102", rules={"WL102": {"underflow_energy": None}}), "WL102", "m.weight")
        assert found.value == pytest.approx(400 / 104, rel=1e-12)

    def test_fp16_stored_tensor_never_reported(self):
        w = gt.tensor(gt.gaussian((32, 32), seed=10), torch.float16)
        w[0, 0] = 65504.0
        w.view(-1)[1:200] = 2.0**-24                   # fp16's smallest subnormal
        assert findings(lint({"m.weight": w}, "WL102")) == []

    def test_normal_tensor_passes(self):
        w = gt.tensor(gt.gaussian((64, 64), std=0.02, seed=11))
        assert findings(lint({"m.weight": w, "m.bias": torch.zeros(64)}, "WL102")) == []

    def test_overflow_threshold_is_the_real_rounding_boundary(self):
        w = gt.tensor(gt.gaussian((16, 16), seed=12))
        w[0, 0], w[0, 1] = 65510.0, -65519.0   # cast to fp16: ±65504, finite
        assert not torch.isinf(w.half()).any()
        assert findings(lint({"m.weight": w}, "WL102")) == []

    def test_underflow_counts_the_halfway_value(self):
        w = gt.tensor(gt.gaussian((40, 50), seed=13))
        w.view(-1)[:100] = 2.0**-25
        flushed = int(((w != 0) & (w.half() == 0)).sum())
        assert flushed == 100
        found = only(lint({"m.weight": w}, "WL102", rules={"WL102": {"underflow_energy": None}}), "WL102", "m.weight")
        assert found.value == pytest.approx(5.0)

    def test_underflow_of_negligible_energy_is_not_reported(self):
        """BatchNorm-gated dead filters: many values flush to zero but carry ~1e-15 of Σw²."""
        w = gt.tensor(gt.gaussian((40, 50), std=0.05, seed=9))
        w[:4] = gt.tensor(gt.gaussian((4, 50), std=1e-9, seed=10))  # 10% of the values, four dead filters
        report = lint({"m.weight": w}, "WL102")
        assert findings(report) == []
        assert report.tensors["m.weight"]["precision"]["fp16_underflow_percentage"] > 9

    def test_underflow_of_a_layer_scaled_down_is_a_warning_with_its_energy(self):
        w = gt.tensor(gt.gaussian((40, 50), std=1e-8, seed=11))  # the whole layer below fp16's range
        found = only(lint({"m.weight": w}, "WL102"), "WL102", "m.weight")
        assert found.severity is WARNING
        flushed = int(((w != 0) & (w.half() == 0)).sum())
        bound = min(1.0, flushed * 2.0**-50 / float((w.double() ** 2).sum()))
        assert found.extra["underflow_energy"] == pytest.approx(bound, rel=1e-6)
        assert found.extra["underflow_energy"] > 1e-4


# =============================================================================================
# WL201 extreme-outliers
# =============================================================================================
class TestExtremeOutliers:
    def test_gaussian_passes(self):
        w = gt.tensor(gt.gaussian((256, 256), std=0.02, seed=14))
        report = lint({"m.weight": w}, "WL201")
        assert findings(report) == []
        share = report.tensors["m.weight"]["quantization"]["extreme_outlier_percentage"]
        assert share == pytest.approx(gt.outlier_percentage(gt.stored(w)), abs=0.01)
        assert 0.15 < share < 0.4  # 0.27% for a Gaussian

    def test_many_outliers_in_a_conv_kernel_that_int8_absorbs_are_not_reported_by_default(self):
        """Peaked kernels have 10–40% beyond a robust 3σ and quantize at 31–46 dB per channel."""
        matrix = gt.outlier_mixture((256, 256), seed=15)
        w = gt.tensor(matrix.reshape(256, 16, 4, 4))
        assert gt.outlier_percentage(matrix) > 10
        assert gt.int8_sqnr_db(matrix, per_channel=True) >= 30
        report = lint({"conv.weight": w}, "WL201")
        assert findings(report) == []
        assert report.tensors["conv.weight"]["quantization"]["recommended"] == "int8-per-channel"

    def test_many_outliers_in_a_dense_matrix_are_a_second_population(self):
        w = gt.tensor(gt.outlier_mixture((256, 256), seed=15))
        expected = gt.outlier_percentage(gt.stored(w))
        assert expected > 10 and gt.int8_sqnr_db(gt.stored(w), per_channel=True) >= 30
        found = only(lint({"m.weight": w}, "WL201"), "WL201", "m.weight")
        assert found.severity is WARNING and found.threshold == 10.0
        assert found.value == pytest.approx(expected, abs=0.01)
        assert "second population" in found.message and found.extra["recommended"] == "int8-per-channel"

    def test_many_outliers_that_int8_cannot_absorb_are_an_error(self):
        w = gt.tensor(gt.with_moderate_outliers((64, 1024), share=0.15, spike=100.0, seed=17))
        expected = gt.outlier_percentage(gt.stored(w))
        assert expected > 10 and gt.int8_sqnr_db(gt.stored(w), per_channel=True) < 30
        found = only(lint({"m.weight": w}, "WL201"), "WL201", "m.weight")
        assert found.severity is ERROR and found.threshold == 10.0
        assert found.value == pytest.approx(expected, abs=0.01)
        assert found.extra["recommended"] == "fp16"

    def test_guide_profile_judges_the_share_alone(self):
        w = gt.tensor(gt.outlier_mixture((256, 256), seed=15))
        expected = gt.outlier_percentage(gt.stored(w))
        assert expected > 10
        report = lint({"m.weight": w}, "WL201", profile="guide")
        found = only(report, "WL201", "m.weight")
        assert found.severity is ERROR and found.threshold == 10.0
        assert found.value == pytest.approx(expected, abs=0.01)
        quantization = report.tensors["m.weight"]["quantization"]
        assert quantization["outlier_scale_method"] == "median/MAD"
        flat = gt.stored(w).reshape(-1)
        mad = gt.MAD_TO_SIGMA * np.median(np.abs(flat - np.median(flat)))
        assert quantization["outlier_scale"] == pytest.approx(mad, rel=1e-3)

    def test_mad_zero_falls_back_to_mean_std(self):
        # 60% exact zeros: MAD = 0, so the scale is the standard deviation.
        w = gt.gaussian((64, 128), seed=16)
        w.reshape(-1)[: int(0.6 * w.size)] = 0.0
        w = gt.tensor(w)
        report = lint({"m.weight": w}, "WL201")
        quantization = report.tensors["m.weight"]["quantization"]
        assert quantization["outlier_scale_method"] == "mean/std"
        assert quantization["outlier_scale"] == pytest.approx(gt.stored(w).std(), rel=1e-6)
        assert quantization["extreme_outlier_percentage"] == pytest.approx(gt.outlier_percentage(gt.stored(w)), abs=1e-9)

    def test_outliers_that_per_channel_int8_cannot_absorb_are_warning(self):
        w = gt.tensor(gt.with_moderate_outliers((64, 1024), share=0.03, spike=100.0, seed=17))
        expected = gt.outlier_percentage(gt.stored(w))
        per_channel = gt.int8_sqnr_db(gt.stored(w), per_channel=True)
        assert 1 < expected < 10 and per_channel < 30
        found = only(lint({"m.weight": w}, "WL201"), "WL201", "m.weight")
        assert found.severity is WARNING and found.threshold == 1.0
        assert found.value == pytest.approx(expected, abs=0.01)
        assert found.extra["recommended"] == "fp16"

    def test_outliers_that_per_channel_int8_absorbs_pass(self):
        w = gt.tensor(gt.with_moderate_outliers((64, 1024), share=0.03, seed=18))
        report = lint({"m.weight": w}, "WL201")
        assert 1 < gt.outlier_percentage(gt.stored(w)) < 10
        assert gt.int8_sqnr_db(gt.stored(w), per_channel=True) >= 30
        assert findings(report) == []
        assert report.tensors["m.weight"]["quantization"]["extreme_outlier_percentage"] == pytest.approx(
            gt.outlier_percentage(gt.stored(w)), abs=0.01)

    def test_below_min_size_is_skipped(self):
        w = gt.tensor(gt.outlier_mixture((32, 64), seed=19))  # 2048 < 4096 values
        assert gt.outlier_percentage(gt.stored(w)) > 10
        assert findings(lint({"m.weight": w}, "WL201")) == []


# =============================================================================================
# WL202 int8-sqnr
# =============================================================================================
class TestInt8Sqnr:
    def test_sqnr_matches_hand_computation(self):
        w = gt.tensor(gt.gaussian((64, 128), std=0.05, seed=20))
        w[5, 7] = 0.9  # an uneven range so per-tensor and per-channel differ
        report = lint({"m.weight": w}, "WL202")
        quantization = report.tensors["m.weight"]["quantization"]
        per_tensor = gt.int8_sqnr_db(gt.stored(w), per_channel=False)
        per_channel = gt.int8_sqnr_db(gt.stored(w), per_channel=True)
        assert per_channel - per_tensor > 3
        assert quantization["sqnr_db"] == pytest.approx(per_tensor, abs=0.01)
        assert quantization["sqnr_db_per_channel"] == pytest.approx(per_channel, abs=0.01)

    def test_conv1d_per_channel_uses_output_units(self):
        out_in = gt.gaussian((64, 128), seed=21) * np.geomspace(0.01, 10, 64)[:, None]  # row scales vary
        in_out = gt.tensor(out_in.T.copy())
        report = lint({"h.0.mlp.c_fc.weight": in_out}, "WL202")
        expected = gt.int8_sqnr_db(gt.stored(in_out).T, per_channel=True)
        assert report.tensors["h.0.mlp.c_fc.weight"]["quantization"]["sqnr_db_per_channel"] == pytest.approx(
            expected, abs=0.01)

    def test_spike_with_good_per_channel_is_info(self):
        w = gt.gaussian((128, 64), seed=22)
        w[40, 3] = 1000.0
        w = gt.tensor(w)
        per_tensor = gt.int8_sqnr_db(gt.stored(w), per_channel=False)
        per_channel = gt.int8_sqnr_db(gt.stored(w), per_channel=True)
        assert per_tensor < 30 <= per_channel
        found = only(lint({"m.weight": w}, "WL202"), "WL202", "m.weight")
        assert found.severity is INFO and found.threshold == 30.0
        assert found.value == pytest.approx(per_tensor, abs=0.01)
        assert found.extra["sqnr_db_per_channel"] == pytest.approx(per_channel, abs=0.01)
        assert "per channel" in found.message

    def test_spike_with_bad_per_channel_is_warning(self):
        w = gt.gaussian((8, 1024), seed=23)
        w[2, 500] = 1000.0
        w = gt.tensor(w)
        per_tensor = gt.int8_sqnr_db(gt.stored(w), per_channel=False)
        per_channel = gt.int8_sqnr_db(gt.stored(w), per_channel=True)
        assert per_tensor < 30 and per_channel < 30
        found = only(lint({"m.weight": w}, "WL202"), "WL202", "m.weight")
        assert found.severity is WARNING
        assert found.value == pytest.approx(per_tensor, abs=0.01)
        assert found.extra["sqnr_db_per_channel"] == pytest.approx(per_channel, abs=0.01)
        assert "fp16" in found.message

    def test_gaussian_passes(self):
        w = gt.tensor(gt.gaussian((64, 128), std=0.02, seed=24))
        report = lint({"m.weight": w}, "WL202")
        assert findings(report) == []
        assert report.tensors["m.weight"]["quantization"]["sqnr_db"] == pytest.approx(
            gt.int8_sqnr_db(gt.stored(w), per_channel=False), abs=0.01)

    def test_below_min_size_is_skipped(self):
        w = gt.gaussian((32, 64), seed=25)
        w[0, 0] = 1000.0
        assert findings(lint({"m.weight": gt.tensor(w)}, "WL202")) == []


# =============================================================================================
# WL203 dynamic-range
# =============================================================================================
class TestDynamicRange:
    def test_spike_is_info_with_exact_value(self):
        w = gt.gaussian((64, 128), seed=26)
        w[10, 20] = -200.0
        w = gt.tensor(w)
        expected = gt.dynamic_range(gt.stored(w))
        assert expected > 100
        report = lint({"m.weight": w}, "WL203")
        found = only(report, "WL203", "m.weight")
        assert found.severity is INFO and found.threshold == 100.0
        assert found.value == pytest.approx(expected, rel=1e-6)
        assert found.extra["kurtosis"] == pytest.approx(gt.pearson_kurtosis(gt.stored(w)), rel=1e-6)
        assert report.tensors["m.weight"]["quantization"]["dynamic_range"] == pytest.approx(expected, rel=1e-6)

    def test_gaussian_passes_and_kurtosis_is_three(self):
        w = gt.tensor(gt.gaussian((256, 256), seed=27))
        report = lint({"m.weight": w}, "WL203")
        assert findings(report) == []
        quantization = report.tensors["m.weight"]["quantization"]
        assert quantization["dynamic_range"] == pytest.approx(gt.dynamic_range(gt.stored(w)), rel=1e-6)
        assert quantization["kurtosis"] == pytest.approx(3.0, abs=0.1)


# =============================================================================================
# WL301 norm-anomaly
# =============================================================================================
SIBLING = "layers.{}.mlp.down_proj.weight"


def siblings(count: int = 12, shape=(32, 64)) -> dict[str, torch.Tensor]:
    return {SIBLING.format(i): gt.tensor(gt.gaussian(shape, std=0.02, seed=100 + i)) for i in range(count)}


def expected_ratio(tensors: dict, name: str) -> float:
    """RMS over the depth trend of the others, as documented: the Theil–Sen line through the other
    members' (depth, log RMS·√fan-in), the member's residual taken from the median of theirs."""
    names = sorted(tensors, key=lambda n: int(n.split(".")[1]))
    y = np.array([math.log(gt.rms(gt.stored(tensors[n])) * math.sqrt(tensors[n].shape[1])) for n in names])
    index = names.index(name)
    x_others, y_others = np.delete(np.arange(len(y)), index), np.delete(y, index)
    slope = float(np.median([(y_others[j] - y_others[i]) / (x_others[j] - x_others[i])
                             for i in range(len(y_others)) for j in range(i + 1, len(y_others))]))
    intercept = float(np.median(y_others - slope * x_others))
    residuals = y_others - (intercept + slope * x_others)
    return math.exp(y[index] - (intercept + slope * index) - float(np.median(residuals)))


class TestNormAnomaly:
    def test_healthy_siblings_pass(self):
        assert findings(lint(siblings(), "WL301")) == []

    def test_exploding_sibling(self):
        tensors = siblings()
        tensors[SIBLING.format(7)] = tensors[SIBLING.format(7)] * 50
        found = only(lint(tensors, "WL301"), "WL301", SIBLING.format(7))
        assert found.severity is WARNING
        assert found.value == pytest.approx(50, rel=0.05)
        assert found.value == pytest.approx(expected_ratio(tensors, SIBLING.format(7)), rel=1e-6)
        assert found.extra["siblings"] == 11 and found.extra["role"] == "layers.*.mlp.down_proj.weight"
        assert "exploding" in found.message

    def test_vanishing_sibling(self):
        tensors = siblings()
        tensors[SIBLING.format(2)] = tensors[SIBLING.format(2)] * 0.02
        found = only(lint(tensors, "WL301"), "WL301", SIBLING.format(2))
        assert found.severity is WARNING
        assert found.value == pytest.approx(0.02, rel=0.05)
        assert found.value == pytest.approx(expected_ratio(tensors, SIBLING.format(2)), rel=1e-6)
        assert "vanishing" in found.message

    def test_nan_sibling_causes_no_collateral(self):
        tensors = siblings()
        tensors[SIBLING.format(4)][0, 0] = float("nan")
        tensors[SIBLING.format(5)] = tensors[SIBLING.format(5)] * 1e6  # NaN-free rest huge: still ignored
        report = lint(tensors, "WL301", "WL100")
        assert [f.tensor for f in findings(report, "WL301")] == [SIBLING.format(5)]
        assert [f.tensor for f in findings(report, "WL100")] == [SIBLING.format(4)]

    def test_nan_sibling_alone_causes_nothing(self):
        tensors = siblings()
        tensors[SIBLING.format(4)][3, 3] = float("nan")
        assert findings(lint(tensors, "WL301")) == []

    def test_zeroed_sibling_causes_no_collateral(self):
        tensors = siblings()
        tensors[SIBLING.format(9)] = torch.zeros(32, 64)
        report = lint(tensors, "WL301", "WL503")
        assert findings(report, "WL301") == []
        assert [f.tensor for f in findings(report, "WL503")] == [SIBLING.format(9)]

    def test_zeroed_siblings_do_not_mask_an_exploding_one(self):
        tensors = siblings()
        for i in (0, 1, 2, 3, 4):
            tensors[SIBLING.format(i)] = torch.zeros(32, 64)
        tensors[SIBLING.format(8)] = tensors[SIBLING.format(8)] * 50
        found = only(lint(tensors, "WL301"), "WL301", SIBLING.format(8))
        assert found.extra["siblings"] == 6
        assert found.value == pytest.approx(expected_ratio(
            {k: v for k, v in tensors.items() if v.any()}, SIBLING.format(8)), rel=1e-6)

    def test_fewer_than_four_siblings_pass(self):
        tensors = siblings(3)
        tensors[SIBLING.format(1)] = tensors[SIBLING.format(1)] * 50
        assert findings(lint(tensors, "WL301")) == []

    def test_a_trend_along_depth_is_not_an_anomaly(self):
        """Scales that grow steadily with depth (SmolLM2's value projections: 6× from first to last)."""
        tensors = {SIBLING.format(i): gt.tensor(gt.gaussian((32, 64), std=0.01 * 1.2**i, seed=100 + i))
                   for i in range(12)}
        assert findings(lint(tensors, "WL301")) == []
        tensors[SIBLING.format(6)] = tensors[SIBLING.format(6)] * 5  # off the trend
        found = only(lint(tensors, "WL301"), "WL301", SIBLING.format(6))
        assert found.value == pytest.approx(expected_ratio(tensors, SIBLING.format(6)), rel=1e-6)
        assert found.value == pytest.approx(5, rel=0.1)

    def test_cnn_stages_numbered_in_names_are_siblings(self):
        """``slice3.20`` and ``slice4.30``: conv kernels of one stack, of different widths, He-scaled."""
        widths = [64, 64, 128, 128, 256, 256, 256]
        tensors = {f"features.slice{i // 2 + 1}.{3 * i}.weight":
                   gt.tensor(gt.gaussian((out, inp, 3, 3), std=math.sqrt(2 / (inp * 9)), seed=50 + i))
                   for i, (inp, out) in enumerate(zip([3] + widths[:-1], widths))}
        assert findings(lint(tensors, "WL301")) == []  # the stem (3 input channels) is left out
        planted = "features.slice2.9.weight"
        tensors[planted] = tensors[planted] * 5
        found = only(lint(tensors, "WL301"), "WL301", planted)
        assert found.extra["role"] == "features.slice*.*.weight" and found.extra["siblings"] == 5

    def test_names_without_letters_are_not_grouped(self):
        tensors = {str(100 + i): gt.tensor(gt.gaussian((32, 64), std=0.02, seed=i)) for i in range(8)}
        tensors["105"] = tensors["105"] * 50
        assert findings(lint(tensors, "WL301")) == []

    def test_different_shapes_are_not_siblings(self):
        # Same role, two shapes, 50x apart in scale: two groups of six, each homogeneous.
        tensors = {SIBLING.format(i): gt.tensor(gt.gaussian((32, 64), std=0.02, seed=i)) for i in range(6)}
        tensors.update({SIBLING.format(i): gt.tensor(gt.gaussian((32, 32), std=1.0, seed=i)) for i in range(6, 12)})
        assert findings(lint(tensors, "WL301")) == []


# =============================================================================================
# WL401 low-stable-rank
# =============================================================================================
def truncation_error(matrix: np.ndarray, rank: int) -> float:
    """‖W − W_r‖F/‖W‖F of the rank-r truncated SVD, reconstructed (what applying the advice gives)."""
    u, sv, vt = np.linalg.svd(matrix, full_matrices=False)
    approximation = (u[:, :rank] * sv[:rank]) @ vt[:rank]
    return float(np.linalg.norm(matrix - approximation) / np.linalg.norm(matrix))


class TestLowStableRank:
    def test_suggested_rank_holds_when_applied(self):
        s = np.concatenate([np.linspace(1.0, 0.5, 12), np.full(756, 0.005)])  # 12 directions and a noise floor
        w = gt.tensor(gt.with_singular_values(768, 768, s, seed=28))
        stored = gt.stored(w)
        found = only(lint({"m.weight": w}, "WL401"), "WL401", "m.weight")
        rank = found.extra["suggested_rank"]
        assert found.severity is INFO and found.value == rank
        # The smallest rank within 10%: the truncated SVD at that rank is within, one less is not.
        assert truncation_error(stored, rank) == pytest.approx(found.extra["predicted_relative_error"], rel=1e-4)
        assert truncation_error(stored, rank) <= 0.1 < truncation_error(stored, rank - 1)
        assert found.extra["parameters"] == 768 * 768
        assert found.extra["parameters_saved"] == 768 * 768 - rank * (768 + 768)
        assert found.extra["parameters_saved"] >= 0.5 * 768 * 768
        assert f"low-rank factorization of rank {rank}" in found.message and "LoRA" not in found.message

    def test_the_guides_lora_rank_4_would_not_hold(self):
        """The guide's GPT-2 ``wte`` spectrum (stable rank 3.7 of 768): rank 4 misses the 10% bound,
        10% needs hundreds of directions, and that saves less than half: not reported by default."""
        matrix, stable = gt.low_stable_rank(768, seed=28)
        assert stable == pytest.approx(3.7, rel=1e-12)
        w = gt.tensor(matrix)
        assert truncation_error(gt.stored(w), 4) > 0.1
        assert findings(lint({"m.weight": w}, "WL401")) == []
        found = only(lint({"m.weight": w}, "WL401", profile="guide"), "WL401", "m.weight")
        assert found.extra["suggested_rank"] > 200
        assert truncation_error(gt.stored(w), found.extra["suggested_rank"]) <= 0.1

    def test_low_stable_rank_that_needs_many_directions_is_not_reported(self):
        """One dominant direction over a flat bulk: stable-rank ratio < 0.1, yet 10% needs most directions."""
        n = 200
        s = np.concatenate([[12.0], np.ones(n - 1)])
        w = gt.tensor(gt.with_singular_values(n, n, s, seed=30))
        report = lint({"m.weight": w}, "WL401")
        assert report.tensors["m.weight"]["spectral"]["stable_rank_ratio"] < 0.1
        assert findings(report) == []
        # The guide's profile reports the ratio, but only with a rank that really saves parameters.
        assert findings(lint({"m.weight": w}, "WL401", profile="guide")) == []

    def test_guide_profile_reports_a_low_ratio_with_the_true_rank(self):
        matrix, _ = gt.low_stable_rank(256, seed=29)
        w = gt.tensor(matrix)
        found = only(lint({"m.weight": w}, "WL401", profile="guide"), "WL401", "m.weight")
        assert found.extra["stable_rank_ratio"] < 0.1 and found.threshold == 0.1
        assert truncation_error(gt.stored(w), found.extra["suggested_rank"]) <= 0.1

    def test_effective_rank_is_roy_vetterli(self):
        matrix, _ = gt.low_stable_rank(256, seed=29)
        w = gt.tensor(matrix)
        s = gt.singular_values(gt.stored(w))
        p = s / s.sum()
        expected = float(np.exp(-np.sum(p * np.log(p))))
        report = lint({"m.weight": w}, "WL401")
        assert report.tensors["m.weight"]["spectral"]["effective_rank"] == pytest.approx(expected, rel=1e-4)

    def test_full_rank_gaussian_passes(self):
        w = gt.tensor(gt.gaussian((256, 256), std=0.02, seed=31))
        report = lint({"m.weight": w}, "WL401")
        assert findings(report) == []
        assert report.tensors["m.weight"]["spectral"]["stable_rank"] == pytest.approx(
            gt.stable_rank(gt.stored(w)), rel=1e-6)


# =============================================================================================
# WL501 dead-units / WL503 constant-tensor
# =============================================================================================
class TestDeadAndConstant:
    def test_zeroed_rows_are_dead_units(self):
        w = gt.tensor(gt.gaussian((16, 32), seed=32))
        w[[3, 7, 11]] = 0.0
        report = lint({"m.weight": w}, "WL501", "WL503")
        found = only(report, "WL501", "m.weight")
        assert found.severity is INFO
        assert found.value == 3
        assert found.location == {"rows": [3, 7, 11], "columns": []}
        assert "3, 7, 11" in found.message
        assert findings(report, "WL503") == []

    def test_zeroed_columns_are_dead_inputs(self):
        w = gt.tensor(gt.gaussian((16, 32), seed=33))
        w[:, [0, 31]] = 0.0
        found = only(lint({"m.weight": w}, "WL501"), "WL501", "m.weight")
        assert found.location == {"rows": [], "columns": [0, 31]}

    def test_conv1d_dead_output_is_a_stored_column(self):
        in_out = gt.tensor(gt.gaussian((48, 16), seed=34))  # Conv1D: (in=48, out=16)
        in_out[:, 5] = 0.0                                    # output unit 5
        found = only(lint({"h.2.attn.c_attn.weight": in_out}, "WL501"), "WL501", "h.2.attn.c_attn.weight")
        assert found.location == {"rows": [5], "columns": []}

    def test_all_zero_matrix_is_constant_not_dead(self):
        report = lint({"m.weight": torch.zeros(16, 32)}, "WL501", "WL503")
        found = only(report, "WL503", "m.weight")
        assert found.severity is ERROR and found.value == 0.0
        assert findings(report, "WL501") == []

    def test_constant_matrix(self):
        found = only(lint({"m.weight": torch.full((16, 32), 0.5)}, "WL5"), "WL503", "m.weight")
        assert found.severity is ERROR and found.value == 0.5
        assert "0.5" in found.message

    def test_constant_matrix_is_reported_once_by_all_rules(self):
        report = weightlint.check({"m.weight": torch.full((64, 64), 0.5)})
        assert [(f.code, f.tensor) for f in report.findings] == [("WL503", "m.weight")]

    def test_zero_bias_is_normal(self):
        report = lint({"layers.0.mlp.down_proj.bias": torch.zeros(64), "m.bias": torch.zeros(8)}, "WL5")
        assert findings(report) == []

    def test_ones_norm_scale_is_normal(self):
        assert findings(lint({"layers.0.input_layernorm.weight": torch.ones(64)}, "WL5")) == []

    def test_all_zero_norm_scale(self):
        report = lint({"layers.0.input_layernorm.weight": torch.zeros(64)}, "WL5")
        found = only(report, "WL503", "layers.0.input_layernorm.weight")
        assert found.severity is ERROR and found.value == 0.0

    def test_all_zero_matrix_gets_only_wl503_from_all_rules(self):
        report = lint({"m.weight": torch.zeros(64, 64), "m.bias": torch.zeros(64)})
        assert [(f.code, f.tensor) for f in report.findings] == [("WL503", "m.weight")]

    def test_non_constant_matrix_passes(self):
        assert findings(lint({"m.weight": gt.tensor(gt.gaussian((16, 32), seed=35))}, "WL5")) == []


# =============================================================================================
# WL502 duplicate-tensor
# =============================================================================================
class TestDuplicateTensor:
    def test_identical_matrices_name_each_other(self):
        a = gt.tensor(gt.gaussian((16, 32), seed=36))
        report = lint({"a.weight": a, "b.weight": a.clone(), "c.weight": a + 1e-3}, "WL502")
        first, second = only_of(report, "WL502", "a.weight"), only_of(report, "WL502", "b.weight")
        assert len(findings(report, "WL502")) == 2
        assert first.severity is second.severity is WARNING
        assert first.extra["duplicates"] == ["b.weight"] and "b.weight" in first.message
        assert second.extra["duplicates"] == ["a.weight"] and "a.weight" in second.message
        assert first.value == second.value == 2

    def test_three_copies(self):
        a = gt.tensor(gt.gaussian((16, 32), seed=37))
        report = lint({"x.weight": a, "y.weight": a.clone(), "z.weight": a.clone()}, "WL502")
        assert sorted(f.tensor for f in findings(report, "WL502")) == ["x.weight", "y.weight", "z.weight"]
        assert only_of(report, "WL502", "y.weight").extra["duplicates"] == ["x.weight", "z.weight"]

    def test_tied_embedding_and_head_pass(self):
        e = gt.tensor(gt.gaussian((100, 16), seed=38))
        assert findings(lint({"transformer.wte.weight": e, "lm_head.weight": e.clone()}, "WL502")) == []

    def test_identical_zero_matrices_are_not_duplicates(self):
        report = lint({"a.weight": torch.zeros(16, 32), "b.weight": torch.zeros(16, 32)}, "WL502")
        assert findings(report, "WL502") == []

    def test_same_values_other_dtype_are_not_identical(self):
        a = gt.tensor(gt.gaussian((16, 32), seed=39))
        assert findings(lint({"a.weight": a, "b.weight": a.double()}, "WL502")) == []

    def test_equal_fingerprints_with_different_data_are_not_duplicates(self, tmp_path):
        # 512 × 256 values: the fingerprint samples every 2nd one. Swapping two unsampled values
        # keeps dtype, shape, min, max and the sample: only the data comparison tells.
        a = gt.tensor(gt.gaussian((512, 256), seed=41))
        b = a.clone()
        flat = b.view(-1)
        flat[1], flat[3] = a.view(-1)[3].item(), a.view(-1)[1].item()
        assert not torch.equal(a, b)
        save_file({"a.weight": a, "b.weight": b, "c.weight": a.clone()}, str(tmp_path / "m.safetensors"))
        report = weightlint.check(tmp_path / "m.safetensors", select=["WL502"])
        prints = {name: report.tensors[name]["fingerprint"] for name in ("a.weight", "b.weight", "c.weight")}
        assert len(set(prints.values())) == 1  # all three are candidates ...
        assert sorted(f.tensor for f in findings(report, "WL502")) == ["a.weight", "c.weight"]  # ... two are copies

    def test_duplicates_in_different_files_are_separate(self, tmp_path):
        a = gt.tensor(gt.gaussian((16, 32), seed=40))
        save_file({"a.weight": a}, str(tmp_path / "one.safetensors"))
        save_file({"b.weight": a.clone()}, str(tmp_path / "two.safetensors"))
        report = weightlint.check(tmp_path / "one.safetensors", tmp_path / "two.safetensors", select=["WL502"])
        assert findings(report) == []


# =============================================================================================
# WL601 untrained-layer
# =============================================================================================
class TestUntrainedLayer:
    @pytest.mark.parametrize("shape", [(256, 256), (512, 2048)])
    def test_random_init_is_warning(self, shape):
        w = gt.tensor(gt.gaussian(shape, std=0.02, seed=41))
        report = lint({"m.weight": w}, "WL601")
        found = only(report, "WL601", "m.weight")
        assert found.severity is WARNING
        spectral = report.tensors["m.weight"]["spectral"]
        assert spectral["mp_spikes"] == 0
        # The Marchenko–Pastur edge for Q = N/M, with the rule's Tracy–Widom margin.
        q, m = max(shape) / min(shape), min(shape)
        edge = (1 + q**-0.5) ** 2
        assert spectral["mp_edge"] == pytest.approx(edge + q**-0.25 * edge ** (1 / 3) * m ** (-1 / 3), rel=1e-12)
        eigen = gt.singular_values(gt.stored(w)) ** 2
        assert spectral["lambda_max_ratio"] == pytest.approx(eigen.max() / eigen.mean(), rel=1e-6)
        if min(shape) >= 512:
            assert found.value > 6 and found.threshold == 6.0

    def test_trained_like_passes(self):
        w = gt.tensor(gt.trained_like(256, 256, rank=8, seed=42))
        report = lint({"m.weight": w}, "WL601")
        assert findings(report) == []
        assert report.tensors["m.weight"]["spectral"]["mp_spikes"] == 8

    def test_trained_like_large_passes(self):
        w = gt.tensor(gt.trained_like(512, 1024, rank=8, seed=43))
        assert findings(lint({"m.weight": w}, "WL601")) == []

    def test_small_side_below_min_rank_passes(self):
        w = gt.tensor(gt.gaussian((40, 256), std=0.02, seed=44))
        assert findings(lint({"m.weight": w}, "WL601")) == []


# =============================================================================================
# Health score and verdict
# =============================================================================================
def scored(errors: int, warnings: int, infos: int = 0, **settings):
    tensors = {"healthy.weight": gt.tensor(gt.gaussian((8, 8), seed=199))}
    for i in range(errors):            # WL503 error each
        tensors[f"zero{i}.weight"] = torch.zeros(8, 8)
    for i in range(0, warnings, 2):    # WL502: a pair of copies is two warnings
        t = gt.tensor(gt.gaussian((8, 8), seed=200 + i))
        tensors[f"dup{i}a.weight"], tensors[f"dup{i}b.weight"] = t, t.clone()
    for i in range(infos):             # WL501 info each
        t = gt.tensor(gt.gaussian((8, 8), seed=300 + i))
        t[0] = 0.0
        tensors[f"dead{i}.weight"] = t
    report = lint(tensors, "WL501", "WL502", "WL503", **settings)
    assert report.counts() == {"error": errors, "warning": warnings, "info": infos}
    return report


class TestHealthScore:
    def test_one_error_two_warnings(self):
        summary = scored(1, 2, infos=3).summary()
        assert summary["health_score"] == 100 - 10 - 6 == 84
        assert summary["verdict"] == "do not deploy"  # the error fails the gate, whatever the score
        assert summary["counts"] == {"error": 1, "warning": 2, "info": 3}

    @pytest.mark.parametrize("errors, warnings, verdict", [
        (0, 0, "deploy"), (0, 4, "deploy"), (1, 0, "do not deploy"), (11, 0, "do not deploy")])
    def test_default_verdict_follows_the_gate(self, errors, warnings, verdict):
        report = scored(errors, warnings)
        assert report.verdict == report.summary()["verdict"] == verdict
        assert (verdict == "deploy") == (int(report.exit_code) == 0)

    @pytest.mark.parametrize("errors, warnings, score, verdict", [
        (0, 0, 100, "good: deploy"),
        (0, 6, 82, "good: deploy"),
        (0, 8, 76, "fix before deploying"),
        (1, 0, 90, "fix before deploying"),  # the guide's score is good, but an error fails the gate
        (2, 2, 74, "fix before deploying"),
        (4, 0, 60, "fix before deploying"),
        (4, 2, 54, "do not deploy"),
        (11, 0, 0, "do not deploy"),
    ])
    def test_guide_profile_score_bands(self, errors, warnings, score, verdict):
        report = scored(errors, warnings, profile="guide")
        assert report.health_score == report.summary()["health_score"] == score
        assert report.verdict == report.summary()["verdict"] == verdict
        assert report.summary()["profile"] == "guide"

    def test_nothing_checked_is_never_deploy(self, tmp_path):
        (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint")
        report = weightlint.check(tmp_path / "broken.safetensors")
        assert report.verdict == "nothing checked" and int(report.exit_code) != 0
        assert weightlint.check({}).verdict == "nothing checked"

    def test_exit_code_follows_fail_on(self):
        w = gt.tensor(gt.with_condition(64, 96, 2e4, seed=45))
        assert int(weightlint.check({"m.weight": w}, select=["WL101"], profile="guide").exit_code) == 0
        assert int(weightlint.check({"m.weight": w}, select=["WL101"], fail_on="warning", profile="guide").exit_code) != 0
        assert findings(weightlint.check({"m.weight": w}, select=["WL1"], ignore=["WL101"])) == []


def test_tied_copies_are_not_read_again(tmp_path, monkeypatch):
    """An embedding and its tied head share a fingerprint; no finding can come of it, so the data
    is not read a second time (that would double the peak memory on a 7B model's embedding).
    Untied copies are read again and compared."""
    import weightlint.rules.duplicate_tensor as rule_module

    calls = []
    real = rule_module.same_data
    monkeypatch.setattr(rule_module, "same_data", lambda *pair: calls.append(pair) or real(*pair))
    e = gt.tensor(gt.gaussian((100, 16), seed=42))
    save_file({"transformer.wte.weight": e, "lm_head.weight": e.clone()}, str(tmp_path / "tied.safetensors"))
    assert findings(weightlint.check(tmp_path / "tied.safetensors", select=["WL502"])) == []
    assert calls == []
    save_file({"a.weight": e, "b.weight": e.clone()}, str(tmp_path / "copies.safetensors"))
    assert len(findings(weightlint.check(tmp_path / "copies.safetensors", select=["WL502"]))) == 2
    assert [(x.name, y.name) for x, y in calls] == [("a.weight", "b.weight")]


def test_a_weight_at_float32s_limit_is_judged_without_a_crash(capsys):
    """FLT_MAX overflowed the float32 Gram matrix and the SQNR's noise (\"math domain error\")."""
    w = gt.gaussian((64, 128), std=0.02, seed=60).astype(np.float32)
    w[3, 4] = np.finfo(np.float32).max
    report = weightlint.check({"a.weight": w, "b.weight": gt.gaussian((8, 8), seed=61).astype(np.float32)})
    assert ("WL102", "a.weight") in {(f.code, f.tensor) for f in report.findings}
    quantization = report.tensors["a.weight"]["quantization"]
    assert math.isfinite(quantization["sqnr_db"]) and math.isfinite(quantization["kurtosis"])
    assert "b.weight" in report.tensors and "Warning" not in capsys.readouterr().err
