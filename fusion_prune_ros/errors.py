"""The package's own exception types.

Raise `UserError` for problems the user can fix (a missing table, an unknown split, an existing output folder):
the command line turns it into a one-line error and a non-zero exit; anything else is a bug and keeps its
traceback. `InputError` is a malformed sensor message: the node counts it and goes on.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class InputError(ValueError):
    """A malformed input message; `reason` is a stable snake_case code (a diagnostics counter key), the message
    says what was wrong in words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
