"""WL008 internal-error: weightlint itself failed on a file or tensor; the rest of the run goes on."""

from weightlint import Rule, Severity, hookimpl

RULE = Rule(
    code="WL008",
    scope="run",
    name="internal-error",
    severity=Severity.ERROR,
    summary="weightlint failed on this file or tensor, so it was not checked; the other files were.",
    applies_to="every file and tensor (weightlint's readers, statistics and built-in rules)",
    what_it_does="""
Reports a file or tensor on which weightlint's own code raised an error (a reader, a statistic or a
built-in rule), with the error's type and message. The run goes on with every other file and
tensor, so one bad input never loses the rest of the report. An exception raised by a third-party
plugin's rule still stops the run with exit code 3: that is the plugin's bug, not the input's.
""",
    why_bad="""
The file or tensor was not checked, so a clean report would vouch for something nobody looked at.
The finding cannot be deselected, ignored, suppressed, baselined or downgraded: only fixing the
input (or weightlint) makes it go away.
""",
    how_to_fix="""
Run with `--traceback` to see where weightlint failed and report it with the file's first bytes or
a way to reproduce it. If the file is damaged, re-download or re-export it.
""",
    always_reported=True,
)


@hookimpl
def weightlint_rules():
    return [RULE]


@hookimpl
def weightlint_file_problem(problem, context):
    if problem.kind != "internal-error":
        return None
    return RULE.finding(problem.reason, file=problem.file, tensor=problem.tensor, **problem.detail)
