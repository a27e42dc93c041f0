"""What every source yields: tensor records, and problems with the files themselves."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Union

from weightlint.record import TensorRecord

if TYPE_CHECKING:
    from weightlint.config.limits import LimitExceeded


@dataclass
class Problem:
    """Something wrong with a file rather than with a tensor's values.

    ``kind`` is what went wrong: ``unreadable`` (WL001), ``unsafe-pickle`` (WL002),
    ``index-mismatch`` (WL006), ``internal-error`` (WL008), ``limit-exceeded`` (WL009). The integrity rules turn problems into findings.
    """

    kind: str
    file: str
    reason: str
    tensor: str | None = None
    detail: dict = field(default_factory=dict)


Item = Union[TensorRecord, Problem]


def display_path(path: str | os.PathLike) -> str:
    """A path as the user should read it: relative to the working directory when inside it."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        return absolute
    return absolute if relative.startswith("..") else relative


@dataclass
class Source:
    """One thing the user pointed at, resolved to a format and a list of files."""

    path: str
    format: str
    files: list[str]
    notes: list[str] = field(default_factory=list)
    # Whether a config.json beside the source is built into a model skeleton (WL003–WL005, module
    # types, ties); off when none of those rules is selected, so transformers is never imported.
    architecture: bool = True
    # Problems found while resolving the source (a config.json beyond a limit), reported with its items'.
    problems: list[Problem] = field(default_factory=list)
    # Pickles beside the source whose weights are not judged, but whose globals are checked (WL002).
    scan_only: list[str] = field(default_factory=list)
    # The PEFT adapter configuration (weightlint.adapter.config.AdapterConfig) when the source is an adapter.
    adapter: Any = None

    def items(self) -> Iterator[Item]:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> dict:
        return {"path": self.path, "format": self.format, "files": list(self.files)}


def limit_problem(file: str, error: "LimitExceeded", tensor: str | None = None) -> Problem:
    """WL009: the file exceeds one of weightlint's documented limits and is not read further."""
    return Problem("limit-exceeded", file, str(error), tensor=tensor, detail={"limit": error.limit})


def short_reason(error: BaseException) -> str:
    """One line out of an exception, without library boilerplate."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
