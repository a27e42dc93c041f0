"""WL706 not-training: a tensor meant to train did not move between checkpoints."""

from weightlint import Rule, Severity, hookimpl
from weightlint.diff.measures import movement, named_by
from weightlint.formatting import number

RULE = Rule(
    code="WL706",
    scope="run",
    diff_only=True,
    name="not-training",
    severity=Severity.WARNING,
    summary="A tensor that should train (a `trainable` glob) did not move between two checkpoints.",
    applies_to="`weightlint diff`: tensors matching the `trainable` globs (none by default)",
    what_it_does="""
For every tensor whose name matches one of the `trainable` patterns (globs, or `re:` regexes),
warns when its relative change ‖NEW−OLD‖/‖OLD‖ is at most `max_relative_change` (default 1e-6).
Off until `trainable` names something, for example the adapters of a LoRA fine-tune:
`rules: {WL706: {trainable: ["*lora_*"]}}`.
""",
    why_bad="""
The parameters you meant to train are not being updated: they are missing from the optimizer,
frozen by mistake, or their gradients are zero (a detached branch, a LoRA B and A both zero).
""",
    how_to_fix="""
Check that the parameters require gradients and are in the optimizer's parameter groups, and that
their learning rate is not zero.
""",
    example="""
import numpy as np

rng = np.random.default_rng(0)
old = {name: (rng.standard_normal((64, 64)) * 0.02).astype(np.float32) for name in ("base.weight", "lora_A.weight")}
new = {name: value.copy() for name, value in old.items()}  # the adapter did not train
settings = {"rules": {"WL706": {"trainable": ["lora_*"]}}}
""",
    example_output="""
WL706 warning lora_A.weight: should train but did not move (relative change 0 ≤ 1e-06)
""",
    thresholds={"trainable": [], "max_relative_change": 1e-6},
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_check_pair(pair, context):
    options = context.options(RULE, pair.new)
    if options is None or not named_by(pair.name, options["trainable"]):
        return None
    change = movement(pair.stats)
    if change is None or change > options["max_relative_change"]:
        return None
    return RULE.finding(f"should train but did not move (relative change {number(change)} ≤ "
                        f"{number(options['max_relative_change'])})", tensor=pair.new, value=change,
                        threshold=options["max_relative_change"])
