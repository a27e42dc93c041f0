"""The built-in rules: one module per rule or small family, each an ordinary pluggy plugin.

Open a module to read a rule: its ``Rule`` declaration (code, name, severity, thresholds,
documentation) and the hook functions that check tensors.
"""

BUILTIN = (
    "file_integrity",      # WL001 WL002 WL006
    "architecture",        # WL003 WL004 WL005
    "unsupported_tensor",  # WL007
    "internal_error",      # WL008
    "limit_exceeded",      # WL009
    "non_finite",          # WL100
    "ill_conditioned",     # WL101
    "fp16_overflow",       # WL102
    "extreme_outliers",    # WL201
    "int8_sqnr",           # WL202
    "dynamic_range",       # WL203
    "norm_anomaly",        # WL301
    "low_stable_rank",     # WL401
    "dead_units",          # WL501
    "duplicate_tensor",    # WL502
    "constant_tensor",     # WL503
    "untrained_layer",     # WL601
    "suppressions",        # WL010 WL011
    "exploding_change",    # WL701 (weightlint diff)
    "drastic_change",      # WL702
    "condition_growth",    # WL703
    "stagnation",          # WL704
    "frozen_changed",      # WL705
    "not_training",        # WL706
    "structure_changed",   # WL707
    "adapter_rank",        # WL801 (PEFT adapters)
    "adapter_outlier",     # WL802
    "adapter_row_concentration",  # WL803
    "adapter_zero_update",  # WL804
    "adapter_structure",   # WL805
    "adapter_full_weights",  # WL806
    "adapter_executables",  # WL807
    "adapter_base_mismatch",  # WL808
    "adapter_update_size",  # WL809
)
