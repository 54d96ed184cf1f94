"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class AssayError(Exception):
    """A problem the user can fix: the message says what, why and how to fix it."""
