"""A buggy plugin: raises ValueError on every tensor (an internal error, exit code 3)."""

from weightlint import hookimpl

MESSAGE = "boom from the test plugin\nsecond line of the message"


@hookimpl
def weightlint_check_tensor(tensor, stats, context):
    raise ValueError(MESSAGE)
