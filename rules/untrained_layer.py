"""WL601 untrained-layer: a spectrum indistinguishable from random initialization."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL601",
    name="untrained-layer",
    severity=Severity.WARNING,
    adapter_factors=False,
    summary="The singular-value spectrum looks like random initialization: the layer may never have been trained.",
    statistics=("spectral", "dispersion"),
    scope="matrix",
    applies_to="weight matrices whose smaller side is at least `min_rank`",
    thresholds={"alpha": 6.0, "min_rank": 50, "alpha_needed_from_rank": 512, "max_dispersion": 1.5},
    options_doc="`alpha`: WeightWatcher's under-trained bound on the power-law exponent. `min_rank`: smaller "
                "matrices are skipped (spectral fits need about 50 eigenvalues). `alpha_needed_from_rank`: from "
                "this size on, alpha must also exceed `alpha`; below it the Marchenko–Pastur test decides alone "
                "(alpha of random matrices is unreliable there: 40–85% of random 64–256-wide draws fit alpha < 6). "
                "`max_dispersion`: the rows' and the columns' energy dispersion, relative to i.i.d. entries, "
                "must both stay below this (`null`: the spectrum decides alone).",
    what_it_does="""
Looks at the eigenvalues λ = σ² of WᵀW (from the shared singular values), rescaled to mean 1.
A random matrix with i.i.d. entries follows the Marchenko–Pastur law, whose bulk ends at
λ+ = (1 + 1/√Q)², Q = N/M; training creates *spikes* above it. The rule reports a layer with no
eigenvalue above λ+ plus a Tracy–Widom margin (Q^-¼·λ+^⅓·M^-⅓), and, for matrices of at least 512
on the smaller side, a WeightWatcher power-law exponent alpha > 6 (its "under-trained" bound; the
fit is WeightWatcher's default: continuous MLE with the KS-optimal xmin). The JSON carries
`spectral.alpha`, `spectral.mp_spikes`, `spectral.mp_edge` and `spectral.lambda_max_ratio`.

A spectrum alone is not enough: trained matrices can sit inside the MP bulk too. On two real GGUF
LLMs 18 of 60 trained `attn_v` matrices do, and replacing one with a random matrix of the same
norm wrecks the model; a fixed STFT basis does as well. So the rule also asks what only random
initialization gives: rows and columns of equal energy. The coefficient of variation of the rows'
energies Σⱼw² (and of the columns') is compared with what i.i.d. entries of the same moments give,
√((m₄/m₂² − 1)/n); the layer is reported only when both ratios are below `max_dispersion` (1.5).
Random initializations give about 1.0; on the corpus the untrained poolers give 0.97–1.07, the
trained SmolLM2 `attn_v` matrices that sit inside the MP bulk 2.01–4.94 on their more dispersed
axis, the STFT basis 11 on its columns (docs/evidence.md).
The JSON carries `dispersion.row_dispersion` and `dispersion.column_dispersion`.
""",
    why_bad="""
A layer that is still at its random initialization contributes noise: it was not loaded (a
renamed key, a head added after pre-training), frozen by mistake, or its gradients never arrived.
all-MiniLM-L6-v2's `pooler.dense.weight` is such a layer: N(0, 0.02) weights and an all-zero
bias, as Hugging Face initializes a pooler that sentence-transformers never trains (it is unused
by the model's mean pooling).
""",
    how_to_fix="""
Check the loading logs for "newly initialized" weights, the key names against the model, and
whether the layer's parameters are in the optimizer. If the layer is deliberately unused or
untrained (a fresh classification head), suppress the finding for it.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
# A head left at its random initialization: i.i.d. N(0, 0.02²) entries.
tensors = {"pooler.dense.weight": rng.normal(0, 0.02, (384, 384)).astype(np.float32)}
""",
    example_output="""
WL601 warning pooler.dense.weight: no singular value above the Marchenko–Pastur bulk (λmax/mean 3.861 ≤ edge 4.218), power-law alpha 7.23, rows and columns as even as i.i.d. entries give (dispersion 0.924, 0.961): indistinguishable from random initialization; check that it was loaded and trained, or suppress it if it is unused
""",
    references=("https://github.com/CalculatedContent/WeightWatcher", "https://arxiv.org/abs/1810.01075",
                "https://en.wikipedia.org/wiki/Marchenko%E2%80%93Pastur_distribution"),
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    options = context.matrix_options(RULE, tensor)
    if options is None or min(tensor.matrix_shape) < options["min_rank"]:
        return None
    spectral = stats.spectral
    if spectral.get("mp_spikes") is None or spectral["mp_spikes"] > 0 or spectral["sv_max"] == 0:
        return None
    alpha = spectral.get("alpha")
    needs_alpha = spectral["total_rank"] >= options["alpha_needed_from_rank"]
    if needs_alpha and (alpha is None or alpha <= options["alpha"]):
        return None
    rows, columns = stats.dispersion.get("row_dispersion"), stats.dispersion.get("column_dispersion")
    limit = options.get("max_dispersion")
    if limit is not None and (rows is None or columns is None or max(rows, columns) >= limit):
        return None
    message = (f"no singular value above the Marchenko–Pastur bulk (λmax/mean {number(spectral['lambda_max_ratio'])} "
               f"≤ edge {number(spectral['mp_edge'])}), power-law alpha {number(alpha)}, rows and columns as "
               f"even as i.i.d. entries give (dispersion {number(rows)}, {number(columns)}): indistinguishable "
               "from random initialization; check that it was loaded and trained, or suppress it if it is unused")
    return RULE.finding(message, tensor=tensor, value=alpha, threshold=options["alpha"] if needs_alpha else None,
                        mp_spikes=0, lambda_max_ratio=spectral["lambda_max_ratio"], row_dispersion=rows,
                        column_dispersion=columns)
