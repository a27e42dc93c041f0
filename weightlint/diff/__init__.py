"""``weightlint diff``: two checkpoints of one model compared tensor by tensor (the guide's training
health checks). ``engine`` streams the pairs and measures the change; the WL7xx rules in ``rules/``
judge it through the ``weightlint_check_pair`` and ``weightlint_check_diff`` hooks."""

from weightlint.diff.engine import DiffSession, DiffView, TensorPair, diff

__all__ = ["DiffSession", "DiffView", "TensorPair", "diff"]
