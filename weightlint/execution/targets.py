"""What a session reads: the targets resolved to sources (files, folders, in-memory models), their
records in the order a person counts layers, the pickles beside them that are only scanned, and
whether a configuration file came with the download it configures."""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

from weightlint.config import limits
from weightlint.execution.errors import UsageError, internal_problem
from weightlint.formatting import natural_key
from weightlint.record import TensorRecord
from weightlint.sources import LOOKED_FOR, MemorySource, Problem, Source, resolve
from weightlint.sources.base import display_path, limit_problem


def sources_for(targets: Iterable[Any], architecture: bool = True) -> tuple[list[str], list[Source], list[str]]:
    """(paths as given, sources, notes): a folder without weight files is a note saying what was
    looked for."""
    paths, sources, notes = [], [], []
    for target in targets:
        if isinstance(target, (str, os.PathLike)):
            try:
                found = resolve(target, architecture=architecture)
            except FileNotFoundError:
                raise UsageError(f"{os.fspath(target)}: no such file or directory") from None
            paths.append(os.fspath(target))
            sources.extend(found)
            if not found and os.path.isdir(target):
                notes.append(f"{display_path(target)}: no weight files found in the folder or its subfolders "
                             f"(looked for {LOOKED_FOR})")
        else:
            source = MemorySource(target)
            paths.append(source.path)
            sources.append(source)
    return paths, sources, notes


def in_natural_order(records: list[TensorRecord]) -> list[TensorRecord]:
    """Records of a file stored in text order (safetensors writers sort names: blk.0, blk.1,
    blk.10 …) in natural order instead (blk.2 before blk.10), so every report lists layers the way
    a person counts them. A file in any other order (a state dict's module order, a graph's) keeps it."""
    by_file: dict[str, list[TensorRecord]] = {}
    for record in records:
        by_file.setdefault(record.file, []).append(record)
    ordered = []
    for group in by_file.values():
        names = [record.name for record in group]
        ordered.extend(sorted(group, key=lambda r: natural_key(r.name)) if names == sorted(names) else group)
    return ordered


def scan_only_problems(source: Source) -> list[Problem]:
    """WL002 (or why not) for the pickles beside a source that are only checked for unsafe globals;
    one that pickles nothing but inert trainer state gets a note instead."""
    from weightlint.sources.torch_pickle import scan_problem

    problems = []
    for path in source.scan_only:
        try:
            problem = scan_problem(path)
        except limits.LimitExceeded as error:
            problem = limit_problem(display_path(path), error)
        except Exception as error:
            problem = internal_problem(path, error)
        if problem is not None and problem.detail.get("inert"):  # healthy trainer state: a note, not a finding
            source.notes.append(f"{problem.file}: {problem.reason}")
        elif problem is not None:
            problems.append(problem)
    return problems


def inside_targets(config_path: str, targets: Sequence[Any]) -> bool:
    """Whether a configuration file lies in a scanned folder (or beside a scanned file): then it
    may have come with the download it configures."""
    config_folder = os.path.dirname(os.path.abspath(config_path))
    for target in targets:
        if not isinstance(target, (str, os.PathLike)):
            continue
        path = os.path.abspath(os.fspath(target))
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        if config_folder == folder or config_folder.startswith(folder + os.sep):
            return True
    return False
