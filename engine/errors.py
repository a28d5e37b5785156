"""Errors raised by the engine. Messages name the input, band or value at fault and what was expected."""
from __future__ import annotations


class TopoClearError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(TopoClearError):
    """An input raster, file or parameter value cannot be used as given."""


class OutputError(TopoClearError):
    """An output cannot be written (folder missing, no permission, disk full...)."""


class Cancelled(TopoClearError):
    """The user cancelled the run; no output was left behind."""
