"""Exit codes, as pytest numbers them."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    INTERRUPTED = 2
    INTERNAL_ERROR = 3
    USAGE_ERROR = 4
    NO_TENSORS = 5
