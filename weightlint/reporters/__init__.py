"""Reporters only format a :class:`weightlint.Report`; none of them computes anything.

``text`` and ``json`` for people and scripts; ``junit``, ``sarif``, ``github`` and ``markdown`` for
CI systems (docs/ci-integration.md); ``html`` for a reviewer (docs/html-report.md).
"""

from __future__ import annotations

from typing import Callable

from weightlint.reporters import github, html, json_report, junit, markdown, sarif, text

FORMATS: dict[str, Callable[..., str]] = {
    "text": text.render,
    "json": json_report.render,
    "junit": junit.render,
    "sarif": sarif.render,
    "github": github.render,
    "markdown": markdown.render,
    "html": html.render,
}


def render(report, fmt: str, **options) -> str:
    return FORMATS[fmt](report, **options)
