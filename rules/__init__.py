"""The built-in rules: one module per rule or small family, each an ordinary pluggy plugin.

Open a module to read a rule: its ``Rule`` declaration (code, name, severity, thresholds,
documentation) and the hook functions that check tensors.
"""

BUILTIN = (
    "file_integrity",
    "non_finite",
    "dead_units",
)
