"""Which device PyTorch and ONNX Runtime would use, and why not the GPU when one exists but is unusable."""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import warnings
from typing import List

from .dependency_manager import tr


def nvidia_gpus(nvidia_smi: str = "nvidia-smi", timeout: float = 15.0) -> List[str]:
    """The GPUs ``nvidia-smi -L`` lists (``"GPU 0: NVIDIA ..."``, UUIDs dropped); empty when it is not
    installed or fails (no driver)."""
    program = shutil.which(nvidia_smi)
    if program is None:
        return []
    try:
        result = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [re.sub(r"\s*\(UUID:.*\)\s*$", "", line).strip() for line in result.stdout.splitlines()
            if line.strip().startswith("GPU")]


def _torch_lines(gpus: List[str]) -> List[str]:
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        line = tr("PyTorch is not installed: cloud removal is unavailable (install it with TopoClear's "
                  "Dependencies dialog).")
        if gpus:
            line += " " + tr("An NVIDIA GPU is present ({gpu}): choose the CUDA build to use it.").format(gpu=gpus[0])
        return [line]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch

            available = bool(torch.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 (a broken install must be reported, not raised)
        return [tr("PyTorch is installed but does not import ({error}): cloud removal will fail; install it "
                   "again.").format(error=f"{type(exc).__name__}: {exc}")]
    version = getattr(torch, "__version__", "?")
    hip = getattr(torch.version, "hip", None)
    cuda = getattr(torch.version, "cuda", None) or (f"ROCm {hip}" if hip else None)
    if available:
        name = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
        line = tr("PyTorch {version} will use the GPU cuda:0 ({name}, {memory:.0f} GiB; CUDA {cuda}).").format(
            version=version, name=name, memory=memory, cuda=cuda)
        count = torch.cuda.device_count()
        if count > 1:
            line += " " + tr("{count} GPUs are visible; the first is used.").format(count=count)
        return [line]
    line = tr("PyTorch {version} will run on the CPU").format(version=version)
    if cuda is None:
        if gpus:
            return [line + ": " + tr("this is a CPU-only build of PyTorch, but nvidia-smi finds a GPU ({gpu}). "
                                     "Install the CUDA build to use it.").format(gpu=gpus[0])]
        return [line + " " + tr("(CPU-only build of PyTorch; no NVIDIA GPU found).")]
    reason = "; ".join(str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    if gpus:
        why = tr("this is a CUDA {cuda} build and nvidia-smi finds a GPU ({gpu}), but torch.cuda.is_available() "
                 "is False: the NVIDIA driver may be too old for CUDA {cuda}, or CUDA_VISIBLE_DEVICES hides the "
                 "GPU").format(cuda=cuda, gpu=gpus[0])
    else:
        why = tr("this is a CUDA {cuda} build, but torch.cuda.is_available() is False and nvidia-smi finds no "
                 "GPU (no NVIDIA GPU or no driver)").format(cuda=cuda)
    return [line + ": " + why + (f" ({reason})." if reason else ".")]


def _onnx_lines(gpus: List[str]) -> List[str]:
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return [tr("ONNX Runtime is not installed: the cloud and shadow detector is unavailable.")]
    try:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # noqa: BLE001
        return [tr("ONNX Runtime does not import ({error}).").format(error=f"{type(exc).__name__}: {exc}")]
    line = tr("ONNX Runtime {version} providers: {providers}.").format(
        version=getattr(onnxruntime, "__version__", "?"), providers=", ".join(providers) or tr("none"))
    if gpus and "CUDAExecutionProvider" not in providers:
        line += " " + tr("The GPU is not used by the cloud detector: the CUDA provider comes with the "
                         "onnxruntime-gpu package instead of onnxruntime.")
    return [line]


def device_report(nvidia_smi: str = "nvidia-smi") -> str:
    """Which device PyTorch would use (the engine's ``"auto"``: the first CUDA GPU, else the CPU) and, when
    a GPU exists but is not used, why; then the ONNX Runtime providers. Imports torch and onnxruntime
    when installed (a second or two the first time). ``nvidia_smi``: the program that lists GPUs."""
    gpus = nvidia_gpus(nvidia_smi)
    return "\n".join(_torch_lines(gpus) + _onnx_lines(gpus))
