"""What a rule declares about itself: code, name, severity, thresholds and documentation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from weightlint.finding import Finding, Severity

_CODE = re.compile(r"^WL\d{3}$")
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SCOPES = ("file", "tensor", "matrix", "run")


def _yaml(value: Any) -> str:
    """An option's value as the configuration file spells it (``null`` turns a level off)."""
    return "null" if value is None else str(value)


@dataclass(frozen=True)
class Rule:
    """A rule's declaration. The check itself lives in hook functions of the rule's module.

    The documentation sections follow ruff's: what it does, why it is bad, how to fix,
    options, references. The same text feeds ``weightlint explain`` and every reporter.
    """

    code: str
    name: str
    severity: Severity
    summary: str
    applies_to: str
    what_it_does: str
    why_bad: str
    how_to_fix: str
    thresholds: dict[str, Any] = field(default_factory=dict)
    options_doc: str = ""
    references: tuple[str, ...] = ()
    # Statistics groups (TensorStats attributes) the rule reads: computed for every judged tensor
    # while the rule is selected, so the JSON report is complete and consistent across tensors.
    statistics: tuple[str, ...] = ()
    # What one check of the rule covers, for reports that list passing checks (JUnit): "file" (each
    # checkpoint file), "tensor" (each judged tensor), "matrix" (each weight matrix), or "run"
    # (checks of the model or the configuration, visible only through their findings).
    scope: str = "tensor"
    # Threshold sets other than the default, by profile name (``guide``: the guide's literal
    # numbers). Keys are a subset of ``thresholds``; a profile the rule does not list uses the default.
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # ruff's Example section: Python that builds ``tensors`` (name → array), the smallest input that
    # triggers the rule, and the lines it then reports (``CODE severity tensor: message``), one per
    # finding. tests/test_rule_examples.py runs every example, so the documentation cannot drift.
    example: str = ""
    example_output: str = ""
    # Reported whatever the selection, severity overrides, suppressions or baseline say (WL008: what
    # was not checked must never look checked).
    always_reported: bool = False
    # A rule of ``weightlint diff`` (WL7xx): judges the change between two checkpoints, never one.
    diff_only: bool = False
    # A rule of PEFT adapters (WL8xx): runs only where a checked path is an adapter.
    adapter_only: bool = False
    # Whether the rule judges LoRA factors (lora_A, lora_B) and DoRA magnitudes as tensors. They are
    # not weights of a model: lora_A is random and lora_B zero by design, and their ranks and norms
    # say nothing alone; the adapter rules (WL8xx) judge the update they make together.
    adapter_factors: bool = True

    def __post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise ValueError(f"rule code {self.code!r} must be WL followed by three digits")
        if not _NAME.match(self.name):
            raise ValueError(f"rule name {self.name!r} must be kebab-case")
        if self.scope not in SCOPES:
            raise ValueError(f"rule scope {self.scope!r} must be one of {', '.join(SCOPES)}")
        for profile, values in self.profiles.items():
            unknown = set(values) - set(self.thresholds)
            if unknown:
                raise ValueError(f"profile {profile!r} of {self.code} sets unknown options {sorted(unknown)}")

    def thresholds_for(self, profile: str) -> dict[str, Any]:
        """The default thresholds with the profile's values on top."""
        return {**self.thresholds, **self.profiles.get(profile, {})}

    def finding(
        self,
        message: str,
        *,
        tensor: Any = None,
        file: str | None = None,
        severity: Severity | None = None,
        value: Any = None,
        threshold: Any = None,
        location: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Finding:
        """Build a finding of this rule; ``tensor`` is a TensorRecord or a tensor name."""
        tensor_name = getattr(tensor, "name", tensor)
        if file is None and tensor is not None:
            file = getattr(tensor, "file", None)
        return Finding(
            code=self.code,
            rule=self.name,
            severity=severity or self.severity,
            message=message,
            file=file,
            tensor=tensor_name,
            value=value,
            threshold=threshold,
            location=location,
            extra=extra,
        )

    def grade(self, value: float | None, options: dict[str, Any], *, below: bool = False) -> tuple[Severity, Any] | None:
        """The severity a measured value earns against the ``error``/``warning``/``info`` options.

        ``below=True`` for metrics where small is bad (SQNR). A level set to ``None`` is off.
        Returns ``(severity, threshold)`` or ``None`` when the value passes every level.
        """
        if value is None:
            return None
        for level in (Severity.ERROR, Severity.WARNING, Severity.INFO):
            threshold = options.get(str(level))
            if threshold is None:
                continue
            if (value < threshold) if below else (value > threshold):
                return level, threshold
        return None

    def documentation(self) -> str:
        """The full documentation as Markdown, in ruff's section order."""
        parts = [
            f"# {self.code} {self.name}",
            "",
            f"Default severity: **{self.severity}**. Applies to: {self.applies_to}.",
            "",
            "## What it does",
            self.what_it_does.strip(),
            "",
            "## Why is this bad?",
            self.why_bad.strip(),
            "",
            "## How to fix",
            self.how_to_fix.strip(),
            "",
            "## Options",
            self._options_text(),
        ]
        if self.example:
            if self.diff_only:
                call = (f"`diff(old, new, select=[\"{self.code}\"]{', **settings' if 'settings =' in self.example else ''})` "
                        "(`weightlint.diff.engine.diff`, what `weightlint diff` runs)")
            elif self.adapter_only:
                call = (f"`weightlint.check(folder, select=[\"{self.code}\"])` on a folder holding `adapter` as "
                        "`adapter_model.safetensors` and `adapter_config` as `adapter_config.json` (`files` beside "
                        "them; `base`, when given, as `--base-model`)")
            else:
                call = f"`weightlint.check(tensors, select=[\"{self.code}\"])`"
            parts += ["", "## Example", "```python", self.example.strip(), "```", "",
                      f"{call} reports:", "", "```", self.example_output.strip(), "```"]
        if self.references:
            parts += ["", "## References", *(f"- {ref}" for ref in self.references)]
        return "\n".join(parts) + "\n"

    def _options_text(self) -> str:
        lines = []
        for key, default in self.thresholds.items():
            variants = "".join(f", `{_yaml(values[key])}` under `profile: {name}`"
                               for name, values in self.profiles.items() if key in values and values[key] != default)
            lines.append(f"- `{key}` (default `{_yaml(default)}`{variants})")
        if self.options_doc:
            lines.append(self.options_doc.strip())
        return "\n".join(lines) if lines else "None."

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": str(self.severity),
            "summary": self.summary,
            "applies_to": self.applies_to,
            "scope": self.scope,
            "thresholds": dict(self.thresholds),
            "profiles": {name: dict(values) for name, values in self.profiles.items()},
            "what_it_does": self.what_it_does.strip(),
            "why_bad": self.why_bad.strip(),
            "how_to_fix": self.how_to_fix.strip(),
            "options": self.options_doc.strip(),
            "references": list(self.references),
            **({"example": self.example.strip(), "example_output": self.example_output.strip()} if self.example else {}),
        }
