"""WL502 duplicate-tensor: two weight matrices with identical contents that are not tied."""

from collections import defaultdict

from weightlint import Rule, Severity, hookimpl
from weightlint.architecture import annotate_sources
from weightlint.roles import records_tied

RULE = Rule(
    code="WL502",
    name="duplicate-tensor",
    severity=Severity.WARNING,
    summary="Two weight matrices of one checkpoint are bit-for-bit identical but not conventionally tied.",
    scope="matrix",
    applies_to="non-constant weight matrices, compared within each checkpoint",
    what_it_does="""
Hashes every weight matrix's stored bytes (BLAKE2b over dtype, shape and data) during the stream and
reports groups of identical tensors in one checkpoint. Pairs that models tie on purpose — an input
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


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    # Hash while the data is loaded; the model hook compares the digests.
    if context.options(RULE, tensor) is not None and tensor.is_matrix:
        stats.content_hash  # noqa: B018 - computed and cached for weightlint_check_model
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
        if "content_hash" in stats and norms.get("min") != norms.get("max") and context.options(RULE, record) is not None:
            groups[(record.metadata.get("source"), stats["content_hash"])].append(record)
    findings = []
    for members in groups.values():
        for record in members:
            copies = [other.name for other in members if other is not record and not records_tied(record, other)]
            if copies:
                findings.append(RULE.finding(f"identical to {', '.join(copies)}", tensor=record,
                                             value=len(copies) + 1, duplicates=copies))
    return findings
