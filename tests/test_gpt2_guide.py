"""The guide's GPT-2 cases made real: a GPT-2-shaped checkpoint from a transformers config (random
init, no download) with the guide's defects planted, reported at the guide's severities under
``profile: guide``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import weightlint
from tests.spectra import (
    robust_outlier_share,
    to_tensor,
    with_condition_number,
    with_stable_rank,
)
from weightlint import Severity

transformers = pytest.importorskip("transformers")

PLANTED_CONDITION = {"transformer.h.9.attn.c_proj.weight": 129_498.0, "transformer.h.0.attn.c_proj.weight": 103_109.0}
OUTLIER_SHARE = 0.128  # the guide's 12.8% for wpe
STABLE_RANK = 3.7  # the guide's wte stable rank, of 768


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=2048, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    params = dict(model.named_parameters())
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for seed, (name, condition) in enumerate(PLANTED_CONDITION.items()):
            weight = params[name]  # HF Conv1D stores (in, out): plant the (out, in) matrix transposed
            frobenius = float(weight.norm())
            weight.copy_(to_tensor(with_condition_number((768, 768), condition, frobenius, seed=seed).T))
        wpe = params["transformer.wpe.weight"]
        values = rng.normal(0, 0.02, wpe.shape)
        mask = rng.random(wpe.shape) < OUTLIER_SHARE
        values[mask] = rng.choice([-1, 1], mask.sum()) * rng.uniform(0.1, 0.3, mask.sum())
        wpe.copy_(to_tensor(values))
        params["transformer.wte.weight"].copy_(to_tensor(with_stable_rank((2048, 768), STABLE_RANK, seed=7)))
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def report(gpt2_folder):
    return weightlint.check(gpt2_folder, profile="guide")


def stored(folder, name) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))[name].astype(np.float64)


def findings(report, code, tensor):
    return [f for f in report.findings if f.code == code and f.tensor == tensor]


@pytest.mark.parametrize("name", list(PLANTED_CONDITION))
def test_planted_condition_numbers_are_errors(report, gpt2_folder, name):
    (finding,) = findings(report, "WL101", name)
    assert finding.severity is Severity.ERROR
    singular = np.linalg.svd(stored(gpt2_folder, name), compute_uv=False)
    assert finding.value == pytest.approx(singular[0] / singular[-1], rel=1e-3)  # exact for the stored values
    assert finding.value == pytest.approx(PLANTED_CONDITION[name], rel=0.02)  # float32 storage moves σmin a little
    assert report.tensors[name]["layout"] == "in_out"


def test_wpe_outliers_are_an_error(report, gpt2_folder):
    (finding,) = findings(report, "WL201", "transformer.wpe.weight")
    assert finding.severity is Severity.ERROR
    assert finding.value == pytest.approx(robust_outlier_share(stored(gpt2_folder, "transformer.wpe.weight")), rel=1e-6)
    assert 12.0 < finding.value < 14.0


def test_wte_low_stable_rank_gets_no_advice_that_would_not_hold(report, gpt2_folder):
    """The guide calls this spectrum compressible ("LoRA rank 4"). Its stable rank is 3.7 of 768, but
    four directions hold only 79% of the energy (45% relative error) and staying within 10% needs
    731 of 768 directions, which saves nothing: no WL401 finding, even under the guide's profile."""
    assert findings(report, "WL401", "transformer.wte.weight") == []
    spectral = report.tensors["transformer.wte.weight"]["spectral"]
    assert spectral["stable_rank"] == pytest.approx(STABLE_RANK, rel=1e-3)
    assert spectral["stable_rank_ratio"] == pytest.approx(STABLE_RANK / 768, rel=1e-3)
    singular = np.linalg.svd(stored(gpt2_folder, "transformer.wte.weight"), compute_uv=False)
    relative_error = np.sqrt(np.cumsum((singular**2)[::-1])[::-1] / np.sum(singular**2))
    assert relative_error[4] > 0.4
    rank = int(np.argmax(np.append(relative_error, 0.0) <= 0.1))
    assert rank * (2048 + 768) > 2048 * 768


def test_no_other_errors(report):
    errors = {(f.code, f.tensor) for f in report.findings if f.severity is Severity.ERROR}
    assert errors == {("WL101", name) for name in PLANTED_CONDITION} | {("WL201", "transformer.wpe.weight")}
    assert report.exit_code == 1
    assert report.summary()["health_score"] <= 70
    assert report.summary()["verdict"] != "good: deploy"


def test_default_profile_judges_what_breaks(gpt2_folder):
    """The planted condition numbers are full-rank matrices: not a finding by default. The wpe
    outliers (12.8% of a dense matrix) are a second population: a warning, since per-channel int8
    absorbs them."""
    default = weightlint.check(gpt2_folder)
    assert not [f for f in default.findings if f.code == "WL101"]
    assert default.tensors["transformer.wpe.weight"]["quantization"]["sqnr_db_per_channel"] >= 30
    (wpe,) = [f for f in default.findings if f.code == "WL201" and f.tensor == "transformer.wpe.weight"]
    assert wpe.severity is Severity.WARNING and "second population" in wpe.message


def test_random_init_layers_are_reported_untrained(report):
    """Every transformer block is at its random initialization: WL601 says so."""
    untrained = {f.tensor for f in report.findings if f.code == "WL601"}
    assert {f"transformer.h.{i}.mlp.c_fc.weight" for i in range(12)} <= untrained
