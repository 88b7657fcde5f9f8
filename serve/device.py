"""Choosing the onnxruntime execution provider, and refusing to pretend.

onnxruntime quietly falls back to the CPU when the CUDA provider cannot load, so the
provider a session really got is read back from `session.get_providers()`.
"""

from __future__ import annotations

import logging

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("cpu", "cuda", "auto")

log = logging.getLogger("serve")


class DeviceError(RuntimeError):
    """The requested device is not the one the session would really run on."""


def providers_for(device: str) -> list[str]:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
    return [CPU] if device == "cpu" else [CUDA, CPU]


def make_session(model_bytes: bytes, device: str, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An InferenceSession on `device`; 'cuda' fails closed, 'auto' falls back loudly."""
    if device == "cuda" and CUDA not in ort.get_available_providers():
        raise DeviceError(
            f"--device cuda: this onnxruntime ({ort.__version__}, providers "
            f"{', '.join(ort.get_available_providers())}) has no CUDA execution provider; "
            "install onnxruntime-gpu, or use --device cpu"
        )
    wanted = providers_for(device) if device != "auto" or CUDA in ort.get_available_providers() else [CPU]
    session = ort.InferenceSession(model_bytes, options, providers=wanted)
    actual = session.get_providers()[0]
    if device == "cuda" and actual != CUDA:
        raise DeviceError(
            f"--device cuda: onnxruntime could not load the CUDA execution provider (the session "
            f"got {actual}); check the CUDA and cuDNN libraries, or use --device cpu"
        )
    return session


def describe_fallback(device: str, actual: str) -> str | None:
    """The message to log when 'auto' ended up on the CPU."""
    if device == "auto" and actual != CUDA:
        available = ", ".join(ort.get_available_providers())
        return f"--device auto: CUDA is not usable here (available providers: {available}); using {actual}"
    return None
