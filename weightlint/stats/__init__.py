"""Per-tensor statistics: computed whole (:mod:`.tensor`), or in row blocks for tensors too large
to widen at once (:mod:`.blocked`)."""

from weightlint.stats.blocked import BlockedTensorStats, UnreadableData, is_giant, stats_for
from weightlint.stats.tensor import (FINGERPRINT_SAMPLE, FP16_INF_FROM, FP16_SMALLEST_NORMAL, FP16_ZERO_AT_OR_BELOW,
                                     GROUPS, TensorStats, same_data, unit_roundoff)

__all__ = ["TensorStats", "BlockedTensorStats", "UnreadableData", "stats_for", "is_giant", "same_data", "unit_roundoff", "GROUPS",
           "FP16_INF_FROM", "FP16_ZERO_AT_OR_BELOW", "FP16_SMALLEST_NORMAL", "FINGERPRINT_SAMPLE"]
