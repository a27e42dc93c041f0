"""WL502 duplicate-tensor: two weight matrices with identical contents that are not tied."""

from collections import defaultdict
from itertools import combinations

from weightlint import Rule, Severity, hookimpl
from weightlint.architecture import annotate_sources
from weightlint.roles import records_tied
from weightlint.stats import same_data

RULE = Rule(
    code="WL502",
    name="duplicate-tensor",
    severity=Severity.WARNING,
    adapter_factors=False,
    summary="Two weight matrices of one checkpoint are bit-for-bit identical but not conventionally tied.",
    scope="matrix",
    applies_to="non-constant weight matrices, compared within each checkpoint",
    what_it_does="""
Fingerprints every weight matrix during the stream (BLAKE2b over dtype, shape, min and max, and a
strided sample of its values), then reads the matrices whose fingerprints match again
and compares their data bit for bit: it reports groups of identical tensors in one checkpoint. Pairs that models tie on purpose — an input
embedding and an output head (`wte`/`lm_head`, `embed_tokens`/`lm_head`, `word_embeddings`/
`decoder`, T5's `shared`) — are not reported, and neither are constant tensors (WL503's job). In a
folder with a `config.json` that `transformers` can build, the model decides instead: tensors it
ties (`tie_word_embeddings`) are not reported, and an embedding identical to an output head the
config declares untied is.
""",
    why_bad="""
Two independently trained layers are never identical. A copy means a merge or conversion script
wrote one layer's weights into another's slot (a copy-paste bug, an off-by-one in layer indices),
and the layer that should be there is lost.
""",
    how_to_fix="""
Re-run the merge or export and check the layer mapping. If the sharing is intended (weight tying,
a shared block), suppress the finding for those tensors.
""",
)


def _may_report(candidates):
    """Whether a group of equal fingerprints can give a finding: two members not tied (tied ones,
    an embedding and its head, are not read again)."""
    return any(not records_tied(a, b) for a, b in combinations(candidates, 2))


def _identical(candidates):
    """Split records with equal fingerprints into groups whose data are bit-for-bit equal."""
    groups = []
    for record in candidates:
        for group in groups:
            try:
                if same_data(group[0], record):
                    group.append(record)
                    break
            except Exception:  # the file changed or vanished since the scan: not a proven copy
                continue
        else:
            groups.append([record])
    return [group for group in groups if len(group) > 1]


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    # Hash while the data is loaded; the model hook compares the digests.
    if context.options(RULE, tensor) is not None and tensor.is_matrix:
        stats.fingerprint  # noqa: B018 - computed and cached for weightlint_check_model
    return None


@hookimpl
def weightlint_check_model(model, context):
    if not context.active(RULE):
        return None
    annotate_sources(model.sources, model.records)  # architecture-declared ties; idempotent
    groups = defaultdict(list)
    for record in model.records:
        stats = model.stats_of(record)
        norms = stats.get("norms", {})
        if "fingerprint" in stats and norms.get("min") != norms.get("max") and context.options(RULE, record) is not None:
            groups[(record.metadata.get("source"), stats["fingerprint"])].append(record)
    findings = []
    for members in (group for candidates in groups.values() if _may_report(candidates)
                    for group in _identical(candidates)):
        for record in members:
            copies = [other.name for other in members if other is not record and not records_tied(record, other)]
            if copies:
                findings.append(RULE.finding(f"identical to {', '.join(copies)}", tensor=record,
                                             value=len(copies) + 1, duplicates=copies))
    return findings
