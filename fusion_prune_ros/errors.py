"""The one exception type the command line turns into a one-line error and a non-zero exit.

Raise `UserError` for problems the user can fix (a missing table, an unknown split, an existing output folder);
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
