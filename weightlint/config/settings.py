"""Run settings: what to select, thresholds, severities, device, overrides, suppressions.

A :class:`Config` comes from the command line, the Python API and the configuration file
(:mod:`weightlint.config.file`); command-line options override the file.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Any

from weightlint.config.limits import DEFAULT as DEFAULT_LIMITS
from weightlint.config.limits import Limits
from weightlint.finding import Severity
from weightlint.rule import Rule

# Threshold profiles: ``default`` is calibrated on real published models (docs/calibration.md);
# ``guide`` is the guide's literal numbers (κ > 1e5 critical, outliers > 10% …) and its score.
PROFILES = ("default", "guide")


def specificity(selector: str) -> int:
    """How specific a selector is: ALL < a code prefix (by length) < a full code or a rule name."""
    selector = selector.strip().upper()
    if selector == "ALL":
        return 0
    return len(selector) if selector.startswith("WL") else 5


def selector_matches(selector: str, rule: Rule) -> bool:
    """``ALL``, a code prefix (``WL1``, ``WL101``) or a rule name (``non-finite``)."""
    selector = selector.strip()
    if selector.upper() == "ALL":
        return True
    if selector.upper().startswith("WL"):
        return rule.code.startswith(selector.upper())
    return selector.lower() == rule.name


class Pattern:
    """A tensor or file pattern: a glob (``*.wpe.weight``) or, prefixed ``re:``, a regex (search)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._regex = re.compile(text[3:]) if text.startswith("re:") else None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self._regex is not None:
            return bool(self._regex.search(value))
        return fnmatch.fnmatchcase(value, self.text)

    def matches_file(self, path: str | None) -> bool:
        """Files match by their path as shown or by their base name."""
        if path is None:
            return False
        return self.matches(path) or self.matches(path.replace("\\", "/").rsplit("/", 1)[-1])

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@dataclass
class Override:
    """Settings for the tensors (and files) that match, applied in order after the base settings.

    ``select`` replaces the selection for those tensors; ``extend_select`` and ``ignore`` add to
    it; ``rules`` merges thresholds and severities.
    """

    tensors: Pattern | None = None
    files: Pattern | None = None
    select: list[str] | None = None
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    where: str = ""

    def matches(self, tensor: str | None, file: str | None) -> bool:
        if self.tensors is not None and not self.tensors.matches(tensor):
            return False
        return self.files is None or self.files.matches_file(file)


@dataclass
class Suppression:
    """One accepted finding: rule, tensor (pattern), optional file (pattern), a reason, an expiry."""

    rule: str
    tensor: Pattern
    reason: str
    file: Pattern | None = None
    expires: datetime.date | None = None
    where: str = ""
    used: int = 0

    def expired(self, today: datetime.date | None = None) -> bool:
        return self.expires is not None and self.expires < (today or datetime.date.today())

    def matches(self, finding, rules: dict[str, Rule]) -> bool:
        rule = rules.get(finding.code)
        names = {finding.code.upper(), (rule.name if rule else finding.rule)}
        if self.rule.upper() not in names and self.rule.lower() not in names:
            return False
        if not self.tensor.matches(finding.tensor) and not (finding.tensor is None and self.tensor.text == "*"):
            return False
        return self.file is None or self.file.matches_file(finding.file)


@dataclass
class Config:
    fail_on: Severity = Severity.ERROR
    profile: str = "default"
    device: str = "auto"
    select: list[str] = field(default_factory=lambda: ["ALL"])
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    exit_zero: bool = False
    jobs: int | None = None  # None: one per two cores on the CPU (two BLAS threads each), 2 on CUDA
    overrides: list[Override] = field(default_factory=list)
    suppress: list[Suppression] = field(default_factory=list)
    baseline: str | None = None
    base_model: str | None = None  # the model a PEFT adapter applies to (--base-model)
    plan_quant: dict[str, Any] = field(default_factory=dict)  # the configuration's ``plan: quant:`` table
    executor: str = "local"  # "ray": the per-tensor work on a Ray cluster (weightlint/execution/ray_executor.py)
    ray_address: str | None = None  # a cluster's address; None: RAY_ADDRESS, else a local cluster
    limits: Limits = DEFAULT_LIMITS
    # The configuration file this came from (None: none), and the fields the command line set,
    # which the file must not override.
    source: str | None = None
    explicit: set[str] = field(default_factory=set)

    def is_selected(self, rule: Rule) -> bool:
        """Most specific selector wins, as in ruff; ties go to ``ignore``."""
        best_select = max((specificity(s) for s in self.select + self.extend_select if selector_matches(s, rule)),
                          default=-1)
        best_ignore = max((specificity(s) for s in self.ignore if selector_matches(s, rule)), default=-1)
        return best_select >= 0 and best_select > best_ignore

    def rule_options(self, rule: Rule) -> dict[str, Any]:
        options = rule.thresholds_for(self.profile)
        for key, value in self.rules.get(rule.code, {}).items():
            if key != "severity":
                options[key] = value
        return options

    def severity_for(self, code: str) -> Severity | None:
        severity = self.rules.get(code, {}).get("severity")
        return Severity.parse(severity) if severity else None

    def for_tensor(self, tensor: str | None, file: str | None, rules: dict[str, Rule]) -> "Config":
        """The settings in force for one tensor: the base, then every matching override in order.

        Each override acts on the set of rules enabled so far: ``select`` starts a new set,
        ``extend-select`` adds to it, ``ignore`` removes from it (in that order), so a later
        override always has the last word over an earlier one.
        """
        matching = [o for o in self.overrides if o.matches(tensor, file)]
        if not matching:
            return self
        enabled = {code for code, rule in rules.items() if self.is_selected(rule)}
        merged_rules = {code: dict(values) for code, values in self.rules.items()}
        for override in matching:
            if override.select is not None:
                enabled = {code for code, rule in rules.items() if any(selector_matches(s, rule) for s in override.select)}
            enabled |= {code for code, rule in rules.items() if any(selector_matches(s, rule) for s in override.extend_select)}
            enabled -= {code for code, rule in rules.items() if any(selector_matches(s, rule) for s in override.ignore)}
            for code, values in override.rules.items():
                merged_rules[code] = {**merged_rules.get(code, {}), **values}
        return replace(self, select=sorted(enabled), extend_select=[], ignore=[], rules=merged_rules, overrides=[])

    def may_select(self, rule: Rule) -> bool:
        """Whether the rule can be active for some tensor (base settings or an override)."""
        return self.is_selected(rule) or any(
            selector_matches(s, rule) for o in self.overrides for s in (o.select or []) + o.extend_select)


@dataclass
class CheckContext:
    """What a rule may ask of the run: its options (None when deselected) and the device."""

    config: Config
    rules: dict[str, Rule]
    device: str

    @property
    def profile(self) -> str:
        return self.config.profile

    def __post_init__(self) -> None:
        self._base = self._options_under(self.config)
        self._per_tensor: dict[tuple, dict[str, dict | None]] = {}
        # Rules whose selection only the command line decides (WL002 when the configuration file
        # lies inside a scanned folder), with the command line's settings.
        self.pinned: dict[str, Config] = {}

    def _options_under(self, config: Config) -> dict[str, dict | None]:
        return {code: config.rule_options(rule) if config.is_selected(rule) else None
                for code, rule in self.rules.items()}

    def active(self, rule: Rule) -> bool:
        """Whether the rule runs for any tensor at all (model-level hooks ask this first)."""
        return self.config.may_select(rule)

    def matrix_options(self, rule: Rule, tensor: Any) -> dict[str, Any] | None:
        """The rule's options when it is selected for this tensor and the tensor is a weight matrix
        of at least the rule's ``min_size`` values (when it has that option); otherwise None."""
        options = self.options(rule, tensor)
        if options is None or not tensor.is_matrix or tensor.numel < options.get("min_size", 0):
            return None
        return options

    def options(self, rule: Rule, tensor: Any = None) -> dict[str, Any] | None:
        """The rule's thresholds for this tensor (a TensorRecord), or None when it is not selected
        (nor when the tensor is a LoRA factor the rule does not judge)."""
        if not rule.adapter_factors and getattr(tensor, "metadata", {}).get("adapter_part"):
            return None
        if rule.code in self.pinned:
            pinned = self.pinned[rule.code]
            return pinned.rule_options(rule) if pinned.is_selected(rule) else None
        if tensor is None or not self.config.overrides:
            return self._base.get(rule.code)
        name = getattr(tensor, "name", None) or getattr(tensor, "tensor", None)  # a record or a Problem
        key = (getattr(tensor, "file", None), name if name is not None or not isinstance(tensor, str) else tensor)
        if key not in self._per_tensor:
            self._per_tensor[key] = self._options_under(self.config.for_tensor(key[1], key[0], self.rules))
        return self._per_tensor[key].get(rule.code)
