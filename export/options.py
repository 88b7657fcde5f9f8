"""What the export command lines accept, importable without torch or onnx, so a typo is
refused at once (a full import of torch takes seconds)."""

from __future__ import annotations

DEFAULT_OPSET = 18
MIN_OPSET = 17  # older opsets go through a converter we do not test
MAX_OPSET = 28  # the newest opset of the onnx we pin (a test keeps the two in step)
DEFAULT_TRITON_REPO = "model_repository"  # Triton's own name; `triton` would shadow a package
EXPORT_EXTRA = 'pip install -c constraints.txt ".[export]"'


def supported_opsets() -> range:
    return range(MIN_OPSET, MAX_OPSET + 1)


def check_opset(opset: int) -> int:
    if opset not in supported_opsets():
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    return opset
