"""What reaches the report: selection and severity overrides, suppressions, the baseline, and the
protection of unsafe-pickle findings from a configuration that came with the scanned model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weightlint.config import Config
from weightlint.finding import Finding
from weightlint.rule import Rule

if TYPE_CHECKING:
    from weightlint.execution.report import Report


class FindingPolicy:
    """Applies the configuration to the findings of a run.

    ``command_line`` is what the command line (or the API) alone asked for: the only say over
    unsafe-pickle findings when ``untrusted_config`` (the configuration file lies inside a scanned
    folder). ``notes`` says what such a configuration tried.
    """

    def __init__(self, config: Config, command_line: Config, rules: dict[str, Rule], untrusted_config: bool) -> None:
        self.config, self.command_line, self.rules = config, command_line, rules
        self.untrusted_config = untrusted_config
        self.protection_notes: list[str] = []

    def apply(self, findings: list[Finding], report: "Report") -> list[Finding]:
        """The findings the report shows; what was suppressed or baselined is recorded on ``report``."""
        findings = self.suppress(self.filter(findings), report)
        if self.config.baseline:
            findings = self.apply_baseline(findings, report)
        if self.untrusted_config and self.config.exit_zero and "exit_zero" not in self.config.explicit and any(
                self.protected(f) for f in findings):
            self.config.exit_zero = False
            self.protection_notes.append(f"{self.config.source}: lies inside a scanned folder and set exit-zero while "
                                         "an unsafe pickle was found; not honoured")
        report.notes.extend(self.protection_notes)
        return findings

    def filter(self, findings: list[Finding]) -> list[Finding]:
        """Selection and severity overrides, per tensor (overrides apply in order)."""
        kept = []
        for finding in findings:
            rule = self.rules.get(finding.code)
            if rule is not None and rule.always_reported:
                kept.append(finding)
                continue
            if self.protected(finding):
                base = self.command_line.for_tensor(finding.tensor, finding.file, self.rules)
                if base.is_selected(rule) and self._file_would_hide(finding, rule):
                    self._protection_note(finding, "deselect or downgrade")
                config = base
            else:
                config = self.config.for_tensor(finding.tensor, finding.file, self.rules)
            if rule is not None and not config.is_selected(rule):
                continue
            severity = config.severity_for(finding.code)
            if severity is not None:
                finding.severity = severity
            kept.append(finding)
        return kept

    def suppress(self, findings: list[Finding], report: "Report") -> list[Finding]:
        """Drop findings a suppression accepts; report unused (WL010) and expired (WL011) entries."""
        if not self.config.suppress:
            return findings
        active = [s for s in self.config.suppress if not s.expired()]
        kept = []
        for finding in findings:
            match = None if self.always_reported(finding) else next(
                (s for s in active if s.matches(finding, self.rules)), None)
            if match is not None and self.protected(finding):
                self._protection_note(finding, "suppress")
                match.used += 1  # it matched; the note says why it did not apply (not WL010)
                match = None
            if match is None:
                kept.append(finding)
            else:
                match.used += 1
                report.suppressed.append(finding)
                report.suppression_reasons.append(f"{match.reason} ({match.where})" if match.where else match.reason)
        file = self.config.source
        for entry in self.config.suppress:
            rule = self.rules.get("WL011" if entry.expired() else "WL010")
            if rule is None or not self.config.is_selected(rule) or (entry.used and not entry.expired()):
                continue
            what = f"suppression of {entry.rule} for {entry.tensor.text}"
            message = (f"{what} expired on {entry.expires.isoformat()}; its findings are reported again"
                       if entry.expired() else f"{what} matched no finding")
            kept.append(rule.finding(f"{message} ({entry.where})", file=file, reason=entry.reason))
        return kept

    def apply_baseline(self, findings: list[Finding], report: "Report") -> list[Finding]:
        from weightlint.baseline import finding_key, read_baseline

        known = read_baseline(self.config.baseline)
        trusted_baseline = "baseline" in self.config.explicit or not self.untrusted_config
        for finding in findings:
            if finding_key(finding) in known and self.protected(finding) and not trusted_baseline:
                self._protection_note(finding, "baseline")
        kept = [f for f in findings if finding_key(f) not in known or self.always_reported(f)
                or (self.protected(f) and not trusted_baseline)]
        report.baselined = [f for f in findings if f not in kept]
        report.baseline_fixed = len(known - {finding_key(f) for f in findings})
        return kept

    def protected(self, finding: Finding) -> bool:
        """An unsafe-pickle finding while the configuration file lies inside a scanned folder: a
        downloaded model must not be able to silence the warning about itself."""
        return self.untrusted_config and finding.code == "WL002"

    def _file_would_hide(self, finding: Finding, rule: Rule | None) -> bool:
        config = self.config.for_tensor(finding.tensor, finding.file, self.rules)
        severity = config.severity_for(finding.code)
        return (rule is not None and not config.is_selected(rule)) or (severity is not None and severity < finding.severity)

    def _protection_note(self, finding: Finding, attempt: str) -> None:
        note = (f"{self.config.source}: lies inside a scanned folder and tried to {attempt} the unsafe-pickle "
                f"finding on {finding.file}; not honoured (only the command line or a configuration outside "
                "the scanned folders can)")
        if note not in self.protection_notes:
            self.protection_notes.append(note)

    def always_reported(self, finding: Finding) -> bool:
        rule = self.rules.get(finding.code)
        return rule is not None and rule.always_reported
