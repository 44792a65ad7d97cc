"""The errors that mean "your input is wrong" (as opposed to a bug): the CLI prints them without a
traceback. A leaf: it imports nothing of lfmlf's, so every layer can raise a :class:`UserError`, and the
CLI can catch them all without importing the modules that define them (and torch with them)."""
from __future__ import annotations


class UserError(Exception):
    """Base of every input error (a sweep file, data, a language code, a model, storage, a sweep's state).
    Each subclass is defined next to the code that raises it; its message names the input and the fix."""


class SweepError(UserError, RuntimeError):
    """A sweep cannot start or resume as asked (e.g. its run folder exists and --resume was not given)."""


USER_ERRORS: tuple[type[Exception], ...] = (UserError,)
