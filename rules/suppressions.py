"""WL010 unused-suppression, WL011 expired-suppression: the configuration's own hygiene.

The runner applies suppressions after the rules ran; these declarations give the findings it
reports about them a code, a severity and documentation.
"""

from weightlint import Rule, Severity, hookimpl

UNUSED = Rule(
    code="WL010",
    scope="run",
    name="unused-suppression",
    severity=Severity.INFO,
    summary="A suppression in the configuration matched no finding.",
    applies_to="entries of `suppress:` in the configuration file",
    what_it_does="""
Reports each entry of the configuration's `suppress:` list that matched no finding in the run, as
ruff's unused-noqa does.
""",
    why_bad="""
A suppression that no longer matches is dead configuration: the tensor was renamed or fixed, or the
entry has a typo and does not suppress what its author meant. Left in place it may hide a future,
unrelated finding on the same tensor.
""",
    how_to_fix="Delete the entry, or correct its rule, tensor or file pattern.",
)

EXPIRED = Rule(
    code="WL011",
    scope="run",
    name="expired-suppression",
    severity=Severity.WARNING,
    summary="A suppression's `expires` date has passed; it no longer suppresses anything.",
    applies_to="entries of `suppress:` with an `expires` date",
    what_it_does="""
Reports each `suppress:` entry whose `expires` date is in the past. An expired suppression is not
applied: the findings it used to hide are reported again.
""",
    why_bad="""
Suppressions with a date are promises ("we accept this until the next retraining"). When the date
passes, the accepted risk needs a new decision.
""",
    how_to_fix="Fix the finding, or renew the suppression with a new date and an updated reason.",
)


@hookimpl
def weightlint_rules():
    return [UNUSED, EXPIRED]
