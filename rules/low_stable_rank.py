"""WL401 low-stable-rank: stable rank far below the full rank (redundancy)."""

from weightlint import Rule, Severity, hookimpl
from weightlint.formatting import number

RULE = Rule(
    code="WL401",
    name="low-stable-rank",
    severity=Severity.INFO,
    summary="Stable rank ‖W‖F²/‖W‖2² is a small fraction of the full rank: the layer is compressible.",
    statistics=("spectral",),
    scope="matrix",
    applies_to="weight matrices",
    thresholds={"info": 0.1},
    options_doc="`info`: stable-rank ratio (stable rank / min(m, n)) below which the rule reports (the guide's 0.1).",
    what_it_does="""
Computes the stable rank ‖W‖F²/‖W‖2² = Σσᵢ²/σmax² and its ratio to the full rank min(m, n), from the
same singular values as every spectral rule, and the effective rank of Roy & Vetterli
(exp of the entropy of σᵢ/Σσ). The message carries the guide's compression hint: ratio < 0.1 →
LoRA rank 4, < 0.2 → LoRA rank 8, < 0.5 → low-rank factorization of rank 32.
""",
    why_bad="""
Most of the layer's energy lives in a few directions: its parameters and FLOPs buy little. This
is an optimization opportunity (the guide rates redundancy medium risk; weightlint reports it as
info), not a malfunction: trained attention and embedding matrices commonly have low stable rank
(all-MiniLM-L6-v2 has ratios between 0.02 and 0.26).
""",
    how_to_fix="""
Factorize the layer (truncated SVD to the effective rank), fine-tune it with a low-rank adapter,
or prune it. Validate accuracy after compressing.
""",
    references=("https://arxiv.org/abs/1804.07612", "https://infoscience.epfl.ch/record/110188"),
)


def compression_hint(ratio: float) -> str:
    if ratio < 0.1:
        return "LoRA rank 4"
    if ratio < 0.2:
        return "LoRA rank 8"
    if ratio < 0.5:
        return "low-rank factorization, rank 32"
    return "no compression suggested"


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
    graded = RULE.grade(ratio, options, below=True)
    if graded is None or spectral["sv_max"] == 0:
        return None
    severity, threshold = graded
    return RULE.finding(
        f"stable rank {number(spectral['stable_rank'])} of {spectral['total_rank']} (ratio {number(ratio)} < "
        f"{number(threshold)}; effective rank {number(spectral['effective_rank'])}): compressible by about "
        f"{100 * (1 - ratio):.0f}%, e.g. {compression_hint(ratio)}",
        tensor=tensor, severity=severity, value=ratio, threshold=threshold,
        stable_rank=spectral["stable_rank"], hint=compression_hint(ratio))
