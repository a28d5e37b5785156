"""Running a network on numpy batches: the device, mixed precision and out-of-memory back-off.

**Devices.** ``"auto"`` (the first CUDA GPU, else the CPU), ``"cpu"``, ``"cuda"`` or
``"cuda:N"``; the device used is reported. On CUDA, mixed precision (float16 autocast) is used
when it keeps the result within :data:`AMP_TOLERANCE` (reflectance) of float32: the first batch
runs both ways and AMP stays on only if the largest difference is within the tolerance. On CUDA
out-of-memory the batch is halved (down to one tile); a single tile that does not fit raises
:class:`TileTooLarge`, for the caller to shrink the tile.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...models.scaling import unscale_s2
from ..errors import InputError
from ..progress import SILENT, Monitor

#: Largest difference (reflectance, 0-1) between a mixed-precision and a float32 prediction for
#: which mixed precision stays on (checked on the first batch of every run).
AMP_TOLERANCE = 0.005
#: Default batch sizes (tiles per batch) per device type.
DEFAULT_BATCH = {"cuda": 8, "cpu": 1}
AMP_MODES = ("auto", "on", "off")


def select_device(name: Optional[str] = "auto") -> Tuple[Any, str]:
    """``(torch.device, description)`` for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    import torch

    text = (name or "auto").strip().lower()
    if text in ("auto", "automatic", ""):
        text = "cuda:0" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu"), f"cpu ({torch.get_num_threads()} threads)"
    if text.startswith("cuda") or text.startswith("gpu"):
        return _cuda_device(name, text)
    raise InputError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")


def _cuda_device(name: Optional[str], text: str) -> Tuple[Any, str]:
    import torch

    if not torch.cuda.is_available():
        built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise InputError(f"device {name!r}: PyTorch {torch.__version__} ({built}) sees no CUDA GPU; "
                         "choose 'auto' or 'cpu'")
    index = 0
    if ":" in text:
        try:
            index = int(text.split(":", 1)[1])
        except ValueError:
            raise InputError(f"device {name!r}: expected cuda:N with a number N") from None
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        names = ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(count))
        raise InputError(f"device {name!r}: there is no CUDA device {index}; available: {names}")
    props = torch.cuda.get_device_properties(index)
    return torch.device(f"cuda:{index}"), f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is PyTorch running out of device memory."""
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or isinstance(
            exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class TileTooLarge(Exception):
    """A single tile does not fit on the device: the tile size must shrink."""


class ModelRunner:
    """Runs a network on numpy batches: device, mixed precision, out-of-memory backoff.

    ``runner(batch)`` takes ``{"s2": (N, C, H, W), "s1": ..., "terrain": ...}`` float32 arrays
    (already scaled) and returns the prediction (N, C_out, H, W) as float32 numpy.
    """

    def __init__(self, model, device="auto", amp: str = "auto", batch_size: Optional[int] = None,
                 scaling: str = "unit", monitor: Monitor = SILENT, onnx: bool = False) -> None:
        """``onnx``: try ONNX Runtime on the CPU (:mod:`.onnx_runner`; worth its export time on large scenes)."""
        import torch

        if amp not in AMP_MODES:
            raise InputError(f"mixed precision {amp!r} is not one of {', '.join(AMP_MODES)}")
        if isinstance(device, str) or device is None:
            self.device, self.device_name = select_device(device)
        else:
            self.device, self.device_name = torch.device(device), str(device)
        self.cuda = self.device.type == "cuda"
        self.model = model.to(self.device).eval()
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = max(1, int(batch_size or DEFAULT_BATCH[self.device.type if self.cuda else "cpu"]))
        self.initial_batch_size = self.batch_size
        self.amp_mode = amp
        self.amp = self.cuda and amp in ("auto", "on")
        self._amp_checked = amp != "auto"
        self.amp_difference: Optional[float] = None
        self.scaling = scaling
        self.monitor = monitor
        self.messages: List[str] = []
        self._onnx = None
        self._onnx_tried = self.cuda or not onnx  # ONNX Runtime serves the CPU only (onnx_runner)

    def _say(self, text: str) -> None:
        self.messages.append(text)
        self.monitor.message(text)

    def _onnx_session(self, batch: Dict[str, np.ndarray]):
        """ONNX Runtime for this network on the CPU when it exports and matches PyTorch; None otherwise."""
        from .onnx_runner import ONNX_TOLERANCE, OnnxSession, onnx_wanted

        self._onnx_tried = True
        if not onnx_wanted():
            return None
        try:
            session = OnnxSession(self.model, batch)
            first = {k: v[:1] for k, v in batch.items()}
            difference = float(np.abs(session(first) - self._forward(first, False, torch_only=True)).max())
        except Exception as exc:  # noqa: BLE001 - any export or runtime failure: PyTorch runs
            self._say(f"ONNX Runtime not used ({type(exc).__name__}: {str(exc)[:200]}); running PyTorch")
            return None
        if difference > ONNX_TOLERANCE:
            self._say(f"ONNX Runtime differs from PyTorch by {difference:.2g}: running PyTorch")
            return None
        self._say(f"CPU inference through ONNX Runtime (within {difference:.1g} of PyTorch on the first tile)")
        return session

    def _forward(self, batch: Dict[str, np.ndarray], amp: bool, torch_only: bool = False) -> np.ndarray:
        import torch

        if not torch_only and not self.cuda:
            if not self._onnx_tried:
                self._onnx = self._onnx_session(batch)
            if self._onnx is not None:
                return self._onnx(batch)

        inputs = {}
        for key, array in batch.items():
            t = torch.from_numpy(np.ascontiguousarray(array))
            if self.cuda:
                t = t.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            inputs[key] = t
        with torch.inference_mode():
            if amp:
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self.model(**inputs)
            else:
                out = self.model(**inputs)
            return out.float().cpu().numpy()

    def _check_amp(self, batch: Dict[str, np.ndarray]) -> None:
        full = self._forward(batch, False)
        half = self._forward(batch, True)
        diff = np.abs(unscale_s2(half, self.scaling) - unscale_s2(full, self.scaling)) / 10000.0
        self.amp_difference = float(np.nanmax(diff)) if diff.size else 0.0
        self._amp_checked = True
        if not np.isfinite(self.amp_difference) or self.amp_difference > AMP_TOLERANCE:
            self.amp = False
            self._say(f"Mixed precision: float16 differs from float32 by up to {self.amp_difference:.4g} reflectance "
                      f"(tolerance {AMP_TOLERANCE}); running in float32")
        else:
            self._say(f"Mixed precision: float16 autocast, within {self.amp_difference:.2g} reflectance of float32 "
                      f"on the first batch (tolerance {AMP_TOLERANCE})")

    def __call__(self, batch: Dict[str, np.ndarray]) -> np.ndarray:
        n = next(iter(batch.values())).shape[0]
        if self.amp and not self._amp_checked:
            self._run_guarded(lambda: self._check_amp({k: v[:1] for k, v in batch.items()}))
        outputs = []
        start = 0
        while start < n:
            size = min(self.batch_size, n - start)
            part = {k: v[start:start + size] for k, v in batch.items()}
            try:
                outputs.append(self._forward(part, self.amp))
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                self._free()
                if size == 1:
                    raise TileTooLarge(str(exc)) from exc
                self.batch_size = max(1, size // 2)
                self._say(f"Out of {self.device.type.upper()} memory with {size} tiles per batch; "
                          f"continuing with {self.batch_size}")
                continue
            start += size
        return np.concatenate(outputs, axis=0)

    def restart(self) -> None:
        """Back to the initial batch size (the scene restarts with smaller tiles)."""
        self.batch_size = self.initial_batch_size

    def peak_memory(self) -> Optional[int]:
        """Peak device memory allocated (bytes) on CUDA; None on the CPU."""
        if not self.cuda:
            return None
        import torch

        return int(torch.cuda.max_memory_allocated(self.device))

    def _run_guarded(self, call) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001
            if not is_out_of_memory(exc):
                raise
            self._free()
            raise TileTooLarge(str(exc)) from exc

    def _free(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
