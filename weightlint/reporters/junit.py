"""JUnit XML, as Jenkins, GitLab, Azure Pipelines and CircleCI read it (written with ``junit-xml``).

One ``<testsuite>`` per checkpoint source, one ``<testcase>`` per (rule, tensor) pair that was
checked (file-level rules: per file), passing cases included. A finding at or above ``--fail-on``
is a ``<failure>``; a finding below it is a passing case whose ``<system-out>`` carries it, so the
``failures`` count equals the number of findings that fail the run. See docs/ci-integration.md.
"""

from __future__ import annotations

import json

from junit_xml import TestCase, TestSuite, to_xml_report_string

from weightlint._version import __version__
from weightlint.finding import json_safe
from weightlint.formatting import number
from weightlint.reporters._common import Case, is_at_or_above, printable, suites


def _details(finding) -> str:
    lines = [
        f"{finding.code} {finding.rule} ({finding.severity}): {finding.message}",
        f"value: {number(finding.value)}",
        f"threshold: {number(finding.threshold)}",
        f"file: {finding.file or '-'}",
    ]
    if finding.tensor is not None:
        lines.append(f"tensor: {finding.tensor}")
    if finding.location:
        lines.append(f"location: {json.dumps(json_safe(finding.location))}")
    return "\n".join(printable(line) for line in lines) + "\n"


def _test_case(case: Case, report) -> TestCase:
    # XML 1.0 admits no control characters and no lone surrogates: names are shown escaped.
    test_case = TestCase(name=printable(case.tensor if case.tensor is not None else (case.file or "<no file>")),
                         classname=case.title, file=printable(case.file) if case.file else None,
                         allow_multiple_subelements=True)
    below = []
    for finding in case.findings:
        if is_at_or_above(finding, report):
            test_case.add_failure_info(message=printable(finding.message), output=_details(finding),
                                       failure_type=str(finding.severity))
        else:
            below.append(f"below --fail-on {report.config.fail_on}: " + _details(finding))
    if below:
        test_case.stdout = "".join(below)
    return test_case


def render(report, **_options) -> str:
    summary = report.summary()
    junit_suites = []
    for suite in suites(report):
        properties = {
            "weightlint": __version__,
            "format": suite.format,
            "files": printable(" ".join(suite.files)),
            "fail_on": summary["fail_on"],
            "health_score": str(summary["health_score"]),
            "verdict": summary["verdict"],
            "exit_code": str(summary["exit_code"]),
        }
        if report.interrupted:
            properties["interrupted"] = "true"
        junit_suites.append(TestSuite(name=printable(suite.name), test_cases=[_test_case(c, report) for c in suite.cases],
                                      file=printable(suite.name), properties=properties))
    return to_xml_report_string(junit_suites, prettyprint=True, encoding="utf-8")
