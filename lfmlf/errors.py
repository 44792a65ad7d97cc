"""The errors that mean "your input is wrong" (as opposed to a bug): the CLI prints them without a
traceback. Each is defined next to the code that raises it; this module only collects them."""
from __future__ import annotations

from lfmlf.config import ConfigError
from lfmlf.data.base import DataError
from lfmlf.languages import LanguageError
from lfmlf.models import ModelError
from lfmlf.storage import StorageError


class SweepError(RuntimeError):
    """A sweep cannot start or resume as asked (e.g. its run folder exists and --resume was not given)."""


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DataError, LanguageError, ModelError, SweepError,
                                            StorageError)
