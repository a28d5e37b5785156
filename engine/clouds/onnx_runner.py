"""CPU inference through ONNX Runtime, with PyTorch as the fallback.

On the CPU, ONNX Runtime runs the convolutional networks of the catalogue faster than PyTorch
(measured side by side on a 1024 px tile of the fill-prior UNet: ``benchmarks/RESULTS.md``).
:class:`OnnxSession` exports a network once per run with ``torch.onnx.export`` (in memory, the
tile's height and width dynamic, the batch dynamic) and runs it with ONNX Runtime's CPU provider;
its first batch is checked against PyTorch (largest difference within :data:`ONNX_TOLERANCE` in
the network's scaled units) before ONNX Runtime is trusted. Anything that fails (``onnx`` or
``onnxruntime`` missing, an operator that does not export, a difference over the tolerance)
leaves the run on PyTorch and says why. ``TOPOCLEAR_ONNX=0`` turns it off.
"""
from __future__ import annotations

import io
import os
from typing import Dict, List, Optional

import numpy as np

#: Largest difference (scaled units) between ONNX Runtime and PyTorch on the first batch.
ONNX_TOLERANCE = 1e-3
#: Environment variable that turns ONNX Runtime off (``0``).
ENV = "TOPOCLEAR_ONNX"

__all__ = ["ONNX_TOLERANCE", "OnnxSession", "onnx_wanted"]


def onnx_wanted() -> bool:
    """Whether ONNX Runtime may be tried (``TOPOCLEAR_ONNX`` not ``0``) and its packages import."""
    if os.environ.get(ENV, "1").strip() in ("0", "off", "no", "false"):
        return False
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime  # noqa: F401
    except Exception:  # missing or broken: PyTorch runs
        return False
    return True


class OnnxSession:
    """A network exported to ONNX and run by ONNX Runtime on the CPU (see the module notes)."""

    def __init__(self, model, batch: Dict[str, np.ndarray], threads: Optional[int] = None) -> None:
        import onnxruntime as ort
        import torch

        self.names: List[str] = list(batch)
        example = {k: torch.from_numpy(np.ascontiguousarray(v[:1])) for k, v in batch.items()}
        buffer = io.BytesIO()
        dynamic = {k: {0: "n", 2: "h", 3: "w"} for k in self.names + ["out"]}
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(_Keywords(model, self.names), tuple(example[k] for k in self.names), buffer,
                              input_names=self.names, output_names=["out"], dynamic_axes=dynamic,
                              opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: Dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: np.ascontiguousarray(batch[k], dtype=np.float32) for k in self.names}
        return self.session.run(None, feed)[0]


class _Keywords:
    """Positional inputs for the exporter, passed on to the model by keyword (``s2``, ``s1``, ``mask``...)."""

    def __new__(cls, model, names):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return self.model(**dict(zip(names, tensors)))

        return Wrapper().eval()
