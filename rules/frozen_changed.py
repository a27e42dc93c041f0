"""WL705 frozen-changed: a tensor meant to stay frozen changed between checkpoints."""

from weightlint import Rule, Severity, hookimpl
from weightlint.diff.measures import movement, named_by
from weightlint.formatting import number

RULE = Rule(
    code="WL705",
    scope="run",
    diff_only=True,
    name="frozen-changed",
    severity=Severity.ERROR,
    summary="A tensor that should be frozen (a `frozen` glob) changed between two checkpoints.",
    applies_to="`weightlint diff`: tensors matching the `frozen` globs (none by default)",
    what_it_does="""
For every tensor whose name matches one of the `frozen` patterns (globs, or `re:` regexes), reports
an error when its relative change ‖NEW−OLD‖/‖OLD‖ exceeds `max_relative_change` (default 1e-6).
`weightlint watch` and the training callbacks compare a checkpoint with the summary of the one
before (the relative change estimated from a sample); a tensor whose checksum changed where no
sampled value did is reported too, with the size of its change unknown.
Off until `frozen` names something, for example the base model of a LoRA fine-tune:
`rules: {WL705: {frozen: ["model.*"]}}`.
""",
    why_bad="""
A frozen backbone that moves means the freeze did not take (`requires_grad` set after the optimizer
was built, a parameter shared with a trained head, weight decay applied to it): the run is not the
experiment you designed, and the base model drifts.
""",
    how_to_fix="""
Freeze before building the optimizer, give the optimizer only the trainable parameters, and exclude
frozen ones from weight decay.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
old = {name: (rng.standard_normal((64, 64)) * 0.02).astype(np.float32) for name in ("base.weight", "lora_A.weight")}
new = {name: value + np.float32(1e-3) for name, value in old.items()}  # the base moved too
settings = {"rules": {"WL705": {"frozen": ["base.*"]}}}
""",
    example_output="""
WL705 error base.weight: should be frozen but changed by 0.0501 (relative, > 1e-06)
""",
    thresholds={"frozen": [], "max_relative_change": 1e-6},
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_pair(pair, context):
    options = context.options(RULE, pair.new)
    if options is None or not named_by(pair.name, options["frozen"]):
        return None
    change = movement(pair.stats)
    if change is None and pair.stats.get("changed"):  # summaries: changed where no sampled value did
        return RULE.finding("should be frozen but changed (in values the sample of a checkpoint summary did not "
                            "reach: compare the two files with `weightlint diff` for the size)", tensor=pair.new,
                            value="changed")
    if change is None or change <= options["max_relative_change"]:
        return None
    return RULE.finding(f"should be frozen but changed by {number(change)} (relative, > "
                        f"{number(options['max_relative_change'])})", tensor=pair.new, value=change,
                        threshold=options["max_relative_change"])
