"""The one translation helper of the plugin: ``tr(text)`` is ``text`` in the user's language.

Every user-facing string of the plugin (Processing algorithms, docks, menus, the dependencies
dialog) goes through :func:`tr`, in the translation context ``TopoClear`` that the plugin's
``i18n/topoclear_<locale>.qm`` files use. Qt is imported on the first call, not at import time, and
when Qt cannot be imported (plain Python, no QGIS) :func:`tr` returns the text unchanged, so modules
that must work without QGIS can use it too.
"""
from __future__ import annotations

from typing import Callable, Optional

#: The translation context of every TopoClear string.
CONTEXT = "TopoClear"

_TRANSLATE: Optional[Callable[[str, str], str]] = None


def _translator() -> Callable[[str, str], str]:
    global _TRANSLATE
    if _TRANSLATE is None:
        try:
            from qgis.PyQt.QtCore import QCoreApplication

            _TRANSLATE = QCoreApplication.translate
        except ImportError:  # no Qt: the text as written
            _TRANSLATE = lambda _context, message: message  # noqa: E731
    return _TRANSLATE


def tr(text: str) -> str:
    """``QCoreApplication.translate("TopoClear", text)``; ``text`` itself where Qt is not importable or no
    translation is installed. Format placeholders after translating: ``tr("{n} files").format(n=3)``."""
    return _translator()(CONTEXT, text)
