"""User errors: bad input that the CLI reports as one line and a non-zero exit, no traceback."""


class UserError(Exception):
    """An error caused by the user's input (a path, a name, a shape), not by a bug."""
