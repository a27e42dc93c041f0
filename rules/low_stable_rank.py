"""WL401 low-stable-rank: stable rank far below the full rank (redundancy)."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number
from weightlint.spectral import suggested_rank

RULE = Rule(
    code="WL401",
    name="low-stable-rank",
    severity=Severity.INFO,
    adapter_factors=False,
    summary="A low-rank factorization reproduces the weight matrix within a small error with far fewer parameters.",
    statistics=("spectral",),
    scope="matrix",
    applies_to="weight matrices",
    thresholds={"info": None, "max_relative_error": 0.1, "min_saving": 0.5},
    profiles={"guide": {"info": 0.1, "min_saving": 0.0}},
    options_doc="`max_relative_error`: the bound on ‖W − W_r‖F/‖W‖F that fixes the suggested rank r. "
                "`min_saving`: report only when rank r saves at least this share of the parameters "
                "(r·(m + n) against m·n). `info`: also require a stable-rank ratio below this (off by "
                "default; the guide's 0.1 under `profile: guide`, where any saving is reported).",
    what_it_does="""
From the same singular values as every spectral rule, finds the **suggested rank**: the smallest
rank r whose best approximation W_r (truncated SVD, Eckart–Young) has a relative Frobenius error
‖W − W_r‖F/‖W‖F = √(Σ_{i>r} σᵢ²/Σσᵢ²) of at most `max_relative_error` (0.1). It reports the layer
when factorizing it as (m × r)(r × n) saves at least `min_saving` (half) of its parameters. The
JSON finding carries `suggested_rank`, `predicted_relative_error` (that error, exact for the
weights), `parameters` and `parameters_saved`, and the stable rank ‖W‖F²/‖W‖2² with its ratio to
min(m, n).

Why not the stable rank: it measures how much energy the *largest* direction holds, not how many
directions a faithful approximation needs: a trained matrix with one dominant direction has a
small stable rank and still needs hundreds of directions to stay within 10% (docs/calibration.md
measures the guide's "LoRA rank 4" advice on the corpus). LoRA is a fine-tuning adapter, not a
compression method.
""",
    why_bad="""
Most of the layer's energy lives in a few directions: its parameters and FLOPs buy little. This
is an optimization opportunity, not a malfunction.
""",
    how_to_fix="""
Replace the layer by two of rank `suggested_rank` (truncated SVD: U_r·diag(σ)_r and V_rᵀ), then
measure the model's accuracy: the bound holds for the weights, not for every input. Measured on
all-MiniLM-L6-v2 with real sentences (docs/plans.md), a layer's output error ranged from 0.1× to
1.14× its weight error (above it for attention value projections), and errors compound across
layers. `weightlint plan lowrank` lists the rank of every matrix. Fine-tune briefly if needed.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
# Rank 12 plus a small noise floor: 12 directions hold the layer within 10%.
signal = rng.standard_normal((256, 12)) @ rng.standard_normal((12, 256))
tensors = {"layer.weight": (signal + 0.5 * rng.standard_normal((256, 256))).astype(np.float32)}
""",
    example_output="""
WL401 info layer.weight: low-rank factorization of rank 54 (of 256) reproduces it within 10.0% relative error (≤ 10%) and saves 58% of its 65,536 parameters; stable rank 8.135 (ratio 0.0318). Measure accuracy after factorizing
""",
    references=("https://en.wikipedia.org/wiki/Low-rank_approximation",
                "https://arxiv.org/abs/1804.07612", "https://infoscience.epfl.ch/record/110188"),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.matrix_options(RULE, tensor)
    if options is None or stats.norms["min"] == stats.norms["max"]:
        return None  # a constant matrix is WL503's finding
    spectral = stats.spectral
    ratio = spectral.get("stable_rank_ratio")
    if ratio is None or spectral.get("sv_max", 0) == 0:
        return None
    if options.get("info") is not None and ratio >= options["info"]:
        return None
    rank, error = suggested_rank(stats.singular_values, options["max_relative_error"])
    rows, columns = tensor.matrix_shape
    parameters = rows * columns
    saved = parameters - rank * (rows + columns)
    if saved <= 0 or saved < options["min_saving"] * parameters:
        return None
    return RULE.finding(
        f"low-rank factorization of rank {rank} (of {spectral['total_rank']}) reproduces it within "
        f"{100 * error:.1f}% relative error (≤ {100 * options['max_relative_error']:g}%) and saves "
        f"{100 * saved / parameters:.0f}% of its {parameters:,} parameters; stable rank "
        f"{number(spectral['stable_rank'])} (ratio {number(ratio)}). Measure accuracy after factorizing",
        tensor=tensor, value=rank, threshold=options["max_relative_error"], suggested_rank=rank,
        predicted_relative_error=error, parameters=parameters, parameters_saved=saved,
        stable_rank=spectral["stable_rank"], stable_rank_ratio=ratio)
