"""weightlint: a pytest-style health linter for neural-network weights.

Public API (everything else is internal)::

    import weightlint
    report = weightlint.check("path/to/model")          # paths, nn.Module or dict of tensors
    report.findings, report.tensors, report.exit_code

Plugins write rules with :class:`Rule`, :class:`Severity` and the :data:`hookimpl` marker.
Heavy modules (torch) are imported on first use so that ``weightlint --help`` starts instantly.
"""

from weightlint._version import __version__
from weightlint.exitcodes import ExitCode
from weightlint.finding import Finding, Severity
from weightlint.hookspecs import hookimpl, hookspec
from weightlint.rule import Rule

_LAZY = {
    "check": "weightlint.execution.session",
    "Session": "weightlint.execution.session",
    "Report": "weightlint.execution.report",
    "ModelView": "weightlint.execution.report",
    "UsageError": "weightlint.execution.errors",
    "Config": "weightlint.config",
    "CheckContext": "weightlint.config",
    "TensorRecord": "weightlint.record",
    "TensorStats": "weightlint.stats",
    "Scope": "weightlint.scope",
}

__all__ = ["__version__", "ExitCode", "Finding", "Severity", "Rule", "hookimpl", "hookspec", *_LAZY]


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'weightlint' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
