"""The safetensors format, read safely: a file's tensor names and shapes from its header alone (no
tensor allocated, pickles refused, truncated or oversized files refused), and the finiteness check of
loaded tensors. :mod:`topoclear.engine.checkpoints` builds model loading on these."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

from .errors import InputError

__all__ = ["MAX_PARAMETERS", "MAX_HEADER_BYTES", "DTYPE_SIZES", "safetensors_header", "check_finite"]

#: Most parameters (tensor elements) a weights file may hold: 2**31 (8 GB in float32).
MAX_PARAMETERS = 1 << 31
#: Largest safetensors header (JSON) read.
MAX_HEADER_BYTES = 64 << 20
#: Bytes per element of each safetensors dtype.
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                       "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_header(path: os.PathLike | str) -> Dict[str, Tuple[int, ...]]:
    """Tensor name -> shape of a safetensors file, read from its header alone (nothing is allocated);
    :class:`InputError` for pickles, truncated or corrupt files and files over :data:`MAX_PARAMETERS`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            after = handle.read(1)  # a safetensors header (JSON) opens with "{"; its length may start with 0x80
            handle.seek(8)
            if (head[:1] == b"\x80" and after != b"{") or head[:4] == b"PK\x03\x04":
                raise InputError(f"{path} is a PyTorch or pickle checkpoint under a .safetensors name, not a safetensors "
                                 "file: TopoClear never loads pickles (they can run code)")
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n <= 1 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise InputError(f"{path} is not a readable safetensors file: its header does not fit the file "
                                 f"({size} bytes): the file is corrupt or truncated")
            header = json.loads(handle.read(n).decode("utf-8"))
    except OSError as exc:
        raise InputError(f"model weights {path} cannot be read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable safetensors file (corrupt header: {exc})") from exc
    if not isinstance(header, dict):
        raise InputError(f"{path} is not a readable safetensors file (its header is not an object)")
    shapes: Dict[str, Tuple[int, ...]] = {}
    end, total = 0, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = tuple(int(d) for d in info["shape"])
            start, stop = (int(v) for v in info["data_offsets"])
            itemsize = DTYPE_SIZES[info["dtype"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is not a readable safetensors file (tensor {name!r} is described wrongly)") \
                from exc
        count = math.prod(shape)
        if any(d < 0 for d in shape) or stop - start != count * itemsize or start < 0:
            raise InputError(f"{path} is not a readable safetensors file (tensor {name!r}: shape {shape} does not "
                             f"match its {stop - start} bytes)")
        shapes[name] = shape
        end, total = max(end, stop), total + count
    if 8 + n + end > size:
        raise InputError(f"{path} is truncated: its tensors need {8 + n + end} bytes, the file holds {size}")
    if total > MAX_PARAMETERS:
        raise InputError(f"{path} holds {total} parameters, more than TopoClear loads ({MAX_PARAMETERS})")
    return shapes


def check_finite(tensors: Mapping[str, Any], where: str) -> None:
    """Raise :class:`InputError` when a floating-point tensor holds NaN or infinite values."""
    import torch

    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(f"{where} holds NaN or infinite values in {len(bad)} of {len(tensors)} tensors (e.g. "
                         f"{', '.join(bad[:3])}): the weights are corrupt or their training diverged; the input is "
                         "not at fault: use other weights")
