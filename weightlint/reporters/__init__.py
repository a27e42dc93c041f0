"""Reporters only format a :class:`weightlint.Report`; none of them computes anything."""

from __future__ import annotations

from typing import Callable

from weightlint.reporters import json_report, text

FORMATS: dict[str, Callable[..., str]] = {
    "text": text.render,
    "json": json_report.render,
}


def render(report, fmt: str, **options) -> str:
    return FORMATS[fmt](report, **options)
