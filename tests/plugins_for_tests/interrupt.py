"""Simulates Ctrl-C in the middle of a scan: raises KeyboardInterrupt on tensors named *interrupt*."""

from weightlint import hookimpl


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    if "interrupt" in tensor.name:
        raise KeyboardInterrupt
    return None
