"""GitHub Actions workflow commands: one annotation per finding.

``::error file=PATH,title=WL101 ill-conditioned::tensor: message`` (warnings as ``::warning``,
info as ``::notice``), escaped as the Actions toolkit escapes them. Checkpoints are binary, so the
annotation names the file and no line.
"""

from __future__ import annotations

from weightlint.reporters._common import (
    GITHUB_COMMANDS,
    in_memory_labels,
    printable,
    relative_path,
)


def escape_data(text: str) -> str:
    """The message after ``::``: ``%``, CR and LF are percent-encoded."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value (``file=``, ``title=``): also ``:`` and ``,``, which delimit properties."""
    return escape_data(printable(text, keep="\r\n")).replace(":", "%3A").replace(",", "%2C")


def command(finding, in_memory: set[str] = frozenset()) -> str:
    properties = []
    if finding.file and finding.file not in in_memory:
        properties.append(f"file={escape_property(relative_path(finding.file))}")
    properties.append(f"title={escape_property(f'{finding.code} {finding.rule}')}")
    message = printable(f"{finding.tensor}: {finding.message}" if finding.tensor else finding.message, keep="\r\n")
    return f"::{GITHUB_COMMANDS[finding.severity]} {','.join(properties)}::{escape_data(message)}"


def render(report, **_options) -> str:
    in_memory = in_memory_labels(report)
    return "".join(command(finding, in_memory) + "\n" for finding in report.findings)
