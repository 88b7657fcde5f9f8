"""Choosing the onnxruntime execution provider, and refusing to pretend.

onnxruntime quietly falls back to the CPU when the CUDA provider cannot load, so the
provider a session really got is read back from `session.get_providers()`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("cpu", "cuda", "auto")

log = logging.getLogger("serve")


class DeviceError(RuntimeError):
    """The requested device is not the one the session would really run on."""


@functools.cache
def load_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels, once.

    onnxruntime-gpu's libraries carry no search path to those wheels: without this, a
    `pip install onnxruntime-gpu[cuda,cudnn]` finds them only after `import torch`. Where
    CUDA is installed system-wide, the default search finds it and this changes nothing."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # onnxruntime older than 1.21
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # it reports failures with print()
        preload()
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.info("onnxruntime.preload_dlls: %s", re.sub(r"\x1b\[[0-9;]*m", "", line.strip()))


def first_line(error: Exception) -> str:
    """The gist of an onnxruntime error (its messages run to many lines), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _cuda_unusable(device: str, name: str, reason: str, fix: str = "check the GPU, CUDA and cuDNN") -> None:
    """Refuse ('cuda') or say why the CPU is used instead ('auto')."""
    if device == "cuda":
        raise DeviceError(f"--device cuda: {reason}; {fix}, or use --device cpu")
    log.warning("%s: --device auto: CUDA is not usable here (%s); using %s", name, reason, CPU)


def make_session(model: str | bytes, device: str, options: ort.SessionOptions | None = None, *,
                 name: str = "model") -> ort.InferenceSession:
    """An InferenceSession on `device`; 'cuda' fails closed (DeviceError), 'auto' falls
    back to the CPU and logs why. `model` is a file path (its external data resolves beside
    it) or serialized bytes. A model that cannot load at all raises onnxruntime's own error,
    whatever the device."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
    if device == "cpu":
        return ort.InferenceSession(model, options, providers=[CPU])
    available = ort.get_available_providers()
    if CUDA not in available:
        _cuda_unusable(device, name, f"this onnxruntime ({ort.__version__}, providers {', '.join(available)}) "
                                     "has no CUDA execution provider", fix="install onnxruntime-gpu")
        return ort.InferenceSession(model, options, providers=[CPU])
    load_cuda_libraries()
    try:
        session = ort.InferenceSession(model, options, providers=[CUDA, CPU])
    except Exception as e:
        # A model that is broken fails on the CPU too, and is reported as itself.
        cpu_session = ort.InferenceSession(model, options, providers=[CPU])
        _cuda_unusable(device, name, f"onnxruntime could not create a CUDA session ({first_line(e)})")
        return cpu_session
    if session.get_providers()[0] != CUDA:
        _cuda_unusable(device, name, f"onnxruntime could not load the CUDA execution provider (the session got "
                                     f"{session.get_providers()[0]}; its log above names the missing library)")
    return session
