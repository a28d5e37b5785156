"""What a user reads when a run fails: one mapping from exceptions to messages, for Processing and
the docks. Expected failures (bad input, cancel, a missing package) give their own message; anything
else gives a short message and its traceback goes to QGIS's message log for a bug report."""
from __future__ import annotations

import traceback

from ..engine.errors import Cancelled, TopoClearError
from .log import log_error

CANCELLED = "Cancelled by the user: no output was written."


def user_message(exc: BaseException) -> str:
    """The message for ``exc``, as a user can act on it."""
    if isinstance(exc, Cancelled):
        return CANCELLED
    if isinstance(exc, TopoClearError):
        return str(exc)
    if isinstance(exc, ImportError):
        name = getattr(exc, "name", None) or str(exc)
        return (f"A package TopoClear needs cannot be imported ({name}). Install the plugin's dependencies "
                "(Plugins > TopoClear > Install dependencies) and restart QGIS.")
    if isinstance(exc, MemoryError):
        return ("Out of memory: choose a smaller tile size or batch, or close other programs, and run again. "
                "No output was written.")
    log_error("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return (f"Unexpected error: {type(exc).__name__}: {exc}. No output was written; the details are in the "
            "TopoClear tab of the log messages panel.")
