"""Choosing the onnxruntime execution provider, and refusing to pretend.

The providers this server knows are one table, PROVIDERS: a `--device` name, onnxruntime's
provider name and options, what prepares it (loading libraries), the Triton instance kind
it reports, and how to get it. Adding one (OpenVINO's, TensorRT's) is one row.

onnxruntime quietly falls back to the CPU when an accelerator's provider cannot load, so
the provider a session really got is read back from `session.get_providers()`: a session
"really loaded" a provider only when that provider comes first there.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
from dataclasses import dataclass, field
from typing import Callable

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

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


@dataclass(frozen=True)
class Provider:
    device: str  # the --device name
    name: str  # onnxruntime's execution provider name
    instance_kind: str  # Triton's ModelInstanceGroup kind for ModelConfig
    install: str  # what gets this provider, for the refusal's message
    check: str = ""  # what to look at when it is installed but does not load
    options: dict = field(default_factory=dict)  # onnxruntime provider options
    prepare: Callable[[], None] | None = None  # run once before its first session

    @property
    def accelerator(self) -> bool:
        return self.name != CPU


PROVIDERS: dict[str, Provider] = {p.device: p for p in (
    Provider("cpu", CPU, "KIND_CPU", "onnxruntime"),
    Provider("cuda", CUDA, "KIND_GPU", "install onnxruntime-gpu", "check the GPU, CUDA and cuDNN",
             prepare=load_cuda_libraries),
)}
AUTO = "auto"  # the first accelerator that really loads, else the CPU
DEVICES = (*PROVIDERS, AUTO)


def instance_kind(provider_name: str) -> str:
    """Triton's instance kind for a session that got `provider_name`."""
    return next((p.instance_kind for p in PROVIDERS.values() if p.name == provider_name), "KIND_CPU")


def first_line(error: Exception) -> str:
    """The gist of an onnxruntime error (its messages run to many lines), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unusable(device: str, provider: Provider, name: str, reason: str, fix: str) -> None:
    """Refuse (that device asked for by name) or say why the CPU is used instead (auto)."""
    if device != AUTO:
        raise DeviceError(f"--device {device}: {reason}; {fix}, or use --device cpu")
    log.warning("%s: --device auto: %s is not usable here (%s); using %s", name, provider.device.upper(),
                reason, CPU)


def _cpu_session(model, options) -> ort.InferenceSession:
    return ort.InferenceSession(model, options, providers=[CPU])


def _accelerated(model, options, device: str, provider: Provider, name: str) -> ort.InferenceSession | None:
    """A session that really runs on `provider`, None when it cannot (auto) or DeviceError."""
    available = ort.get_available_providers()
    if provider.name not in available:
        _unusable(device, provider, name, f"this onnxruntime ({ort.__version__}, providers {', '.join(available)}) "
                                          f"has no {provider.device.upper()} execution provider", fix=provider.install)
        return None
    if provider.prepare is not None:
        provider.prepare()
    try:
        session = ort.InferenceSession(model, options, providers=[(provider.name, provider.options), CPU])
    except Exception as e:
        _cpu_session(model, options)  # a model that is broken fails on the CPU too, and is reported as itself
        _unusable(device, provider, name, f"onnxruntime could not create a {provider.device.upper()} session "
                                          f"({first_line(e)})", fix=provider.check)
        return None
    if session.get_providers()[0] != provider.name:
        _unusable(device, provider, name, f"onnxruntime could not load the {provider.name} (the session got "
                                          f"{session.get_providers()[0]}; its log above names the missing library)",
                  fix=provider.check)
        return None
    return session


def make_session(model: str | bytes, device: str, options: ort.SessionOptions | None = None, *,
                 name: str = "model") -> ort.InferenceSession:
    """An InferenceSession on `device`; a device named by itself fails closed (DeviceError),
    'auto' takes the first accelerator that really loads, else the CPU, and logs why.
    `model` is a file path (its external data resolves beside it) or serialized bytes. A
    model that cannot load at all raises onnxruntime's own error, whatever the device."""
    if device != AUTO and device not in PROVIDERS:
        raise ValueError(f"unknown device {device!r}; valid devices: {', '.join((*PROVIDERS, AUTO))}")
    wanted = [p for p in PROVIDERS.values() if p.accelerator] if device == AUTO else [PROVIDERS[device]]
    for provider in wanted:
        if not provider.accelerator:
            return _cpu_session(model, options)
        session = _accelerated(model, options, device, provider, name)
        if session is not None:
            return session
    return _cpu_session(model, options)
