"""What a user reads when a run fails: one mapping from exceptions to messages, for Processing and
the docks. Expected failures (bad input, cancel, a missing package, a full disk, an unreadable file)
give their own message; anything else gives a short message and its traceback goes to QGIS's message
log for a bug report.

When the caller knows which parameter holds which file (``paths``: parameter name -> path), a message
about one of those files is prefixed with the parameter's name, so the user knows which field to fix.
"""
from __future__ import annotations

import errno
import os
import re
import traceback
from typing import Mapping, Optional

from ..engine.errors import Cancelled, TopoClearError
from .log import log_error

CANCELLED = "Cancelled by the user: no output was written."
#: The plugin's own package: an ImportError inside it is a bug, not a missing dependency.
PLUGIN_PACKAGE = (__package__ or "topoclear").split(".")[0]

_OS_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "not found",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "input/output error (the disk or the network share failed)",
}


def _os_message(exc: OSError) -> str:
    reason = _OS_REASONS.get(exc.errno) or exc.strerror or str(exc)
    names = [n for n in (exc.filename, getattr(exc, "filename2", None)) if n]
    if not names:
        text = str(exc)
        if "No space left" in text:
            reason = "the disk is full"
        return f"{reason} ({text})" if text and text != reason else reason
    target = " -> ".join(str(n) for n in names)
    if exc.errno == errno.ENOENT:
        return f"file not found: {target}"
    return f"{target}: {reason}"


def _gdal_message(text: str) -> str:
    """A GDAL / rasterio failure in words: full disk, truncated or unreadable file."""
    lowered = text.lower()
    if "no space left" in lowered or "disk full" in lowered:
        return f"the disk is full: {text}"
    if any(k in lowered for k in ("ireadblock failed", "tiffread", "read or write failed", "read error",
                                  "tiffreaddirectory", "tifffetchnormaltag", "cannot read tiff header",
                                  "not a tiff", "truncated")):
        return f"the file is truncated or corrupt (GDAL could not read its data: {text})"
    if "not recognized as" in lowered or "not a supported file format" in lowered:
        return f"not a raster GDAL can read ({text})"
    return f"GDAL could not process a file ({text})"


def _is_gdal_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith("rasterio") or type(exc).__name__.startswith("CPLE_")


def _memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower() or \
        "can't allocate memory" in text or "not enough memory" in text.lower()


def message_for(exc: BaseException) -> Optional[str]:
    """The message of an expected failure, or None for an unexpected one (a bug)."""
    if isinstance(exc, Cancelled):
        return CANCELLED
    if isinstance(exc, TopoClearError):
        return str(exc)
    if isinstance(exc, ImportError):
        name = getattr(exc, "name", None) or ""
        if isinstance(exc, ModuleNotFoundError) and name and name.split(".")[0] != PLUGIN_PACKAGE:
            return (f"A package TopoClear needs cannot be imported ({name}). Install the plugin's dependencies "
                    "(Plugins > TopoClear > Install dependencies) and restart QGIS.")
        return None
    if _memory_error(exc):
        return ("Out of memory: choose a smaller tile size or batch, or close other programs, and run again. "
                "No output was written.")
    if isinstance(exc, OSError):
        return _os_message(exc)
    if _is_gdal_error(exc):
        return _gdal_message(str(exc))
    if type(exc).__name__ == "SafetensorError":
        return f"not a readable safetensors file ({exc})"
    return None


_PREFIX = re.compile(r"^([A-Z][A-Z0-9_]*)(\s+#\d+|\s+\([^)]*\))?:")


def name_parameter(message: str, exc: Optional[BaseException], paths: Mapping[str, str],
                   outputs: Optional[Mapping[str, str]] = None) -> str:
    """``message`` prefixed with the parameter whose file it is about (found by the exception's file
    name, else by the path or file name in the text, else, for ``outputs``, by the output's folder),
    unless it already starts with a parameter name."""
    outputs = outputs or {}
    match = _PREFIX.match(message)
    if match and (match.group(1) in {k.split(" ")[0] for k in paths} or not paths):
        return message
    candidates = []
    filenames = [f for f in (getattr(exc, "filename", None), getattr(exc, "filename2", None)) if f]
    for key, path in paths.items():
        if not path:
            continue
        path = str(path)
        real = os.path.realpath(path)
        for name in filenames:
            name_real = os.path.realpath(str(name))
            if name_real == real or name_real.startswith(real.rstrip(os.sep) + os.sep):
                candidates.append((3, len(path), key))
        if path in message or real in message:
            candidates.append((2, len(path), key))
        elif os.path.basename(path.rstrip(os.sep)) and re.search(
                r"(^|[\s/'\"(])" + re.escape(os.path.basename(path.rstrip(os.sep))) + r"($|[\s'\"),:;.])", message):
            candidates.append((1, len(path), key))
    if not candidates:  # a file written beside an output (a checkpoint, a side-car) belongs to that output
        mentioned = [str(f) for f in filenames] + re.findall(r"(/[^\s:'\"()]+)", message)
        owners = set()
        for key, path in outputs.items():
            folder = os.path.realpath(os.path.dirname(str(path)) or ".")
            if any(os.path.realpath(m).startswith(folder.rstrip(os.sep) + os.sep) for m in mentioned):
                owners.add(key.split(" ")[0])
        if len(owners) == 1:
            return f"{owners.pop()}: {message}"
        return message
    key = max(candidates)[2]
    return f"{key}: {message}"


def user_message(exc: BaseException, paths: Optional[Mapping[str, str]] = None,
                 outputs: Optional[Mapping[str, str]] = None) -> str:
    """The message for ``exc``, as a user can act on it; with ``paths`` (parameter -> file, inputs and
    outputs) it names the parameter whose file is at fault; ``outputs`` (parameter -> output path) also
    claim the files written beside them."""
    text = message_for(exc)
    if text is None:
        log_error("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        text = (f"Unexpected error: {type(exc).__name__}: {exc}. No output was written; the details are in the "
                "TopoClear tab of the log messages panel.")
        return text
    return name_parameter(text, exc, paths or {}, outputs)
