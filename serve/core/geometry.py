"""Where a convolution's or pooling's window lies, per spatial axis, as the ONNX spec defines
it: kernel_shape, strides, dilations, pads (begin..., end...) or auto_pad (VALID, SAME_UPPER,
SAME_LOWER), ceil_mode; and the output size that follows, ⌊(n + p_begin + p_end − f) / s⌋ + 1
with f the dilated kernel's extent d·(k − 1) + 1."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .onnx_graph import GraphError, Node

GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool")


@dataclass(frozen=True)
class Axis:
    n: int  # the input's size along this axis
    k: int  # the kernel's size
    s: int = 1  # stride
    d: int = 1  # dilation
    p_begin: int = 0
    p_end: int = 0
    ceil: bool = False

    @property
    def f(self) -> int:
        """The window's extent: the kernel's size once dilated."""
        return self.d * (self.k - 1) + 1

    @property
    def out(self) -> int:
        span = self.n + self.p_begin + self.p_end - self.f
        if span < 0:
            return 0
        if not self.ceil:
            return span // self.s + 1
        out = -(-span // self.s) + 1
        # A last window that would start in the end padding is dropped (onnxruntime and PyTorch).
        return out - 1 if (out - 1) * self.s >= self.n + self.p_begin else out

    @property
    def uncovered(self) -> int:
        """Input cells (and end padding) past the last window: (n + p − f) mod s when the
        sizes do not fit evenly (0 in ceil mode, whose last window runs past the end)."""
        return 0 if self.ceil else max(0, (self.n + self.p_begin + self.p_end - self.f) % self.s)

    def taps(self, o: int) -> list[int]:
        """The input coordinates the window of output `o` reads (negative or >= n: padding)."""
        start = o * self.s - self.p_begin
        return [start + i * self.d for i in range(self.k)]

    def formula(self) -> str:
        pad = f"2·{self.p_begin}" if self.p_begin == self.p_end else f"{self.p_begin} + {self.p_end}"
        inner = f"({self.n} + {pad} − {self.f}) / {self.s}"
        return f"{'⌈' + inner + '⌉' if self.ceil else '⌊' + inner + '⌋'} + 1 = {self.out}"


def _ints(node: Node, name: str, default: list[int]) -> list[int]:
    value = node.attr(name)
    return [int(v) for v in value] if value else default


def spatial_axes(node: Node, input_shape: tuple[int, ...], kernel: tuple[int, ...] | None = None) -> tuple[Axis, ...]:
    """The axes of a Conv / MaxPool / AveragePool / Global*Pool node over an input (N, C, *spatial);
    `kernel` is the weight's spatial shape for a Conv without kernel_shape."""
    sizes = [int(n) for n in input_shape[2:]]
    rank = len(sizes)
    if node.op in GLOBAL_POOLS:
        return tuple(Axis(n, n) for n in sizes)
    ks = _ints(node, "kernel_shape", list(kernel or ()))
    if len(ks) != rank:
        raise GraphError(f"node {node.name}: kernel_shape {ks} does not match the input's {rank} spatial axes")
    strides = _ints(node, "strides", [1] * rank)
    dilations = _ints(node, "dilations", [1] * rank)
    pads = _ints(node, "pads", [0] * 2 * rank)
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    ceil = bool(node.attr("ceil_mode", 0))
    axes = []
    for i, n in enumerate(sizes):
        begin, end = pads[i], pads[i + rank]
        f = dilations[i] * (ks[i] - 1) + 1
        if auto_pad == "VALID":
            begin = end = 0
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, (math.ceil(n / strides[i]) - 1) * strides[i] + f - n)
            small, large = total // 2, total - total // 2
            begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        axes.append(Axis(n, ks[i], strides[i], dilations[i], begin, end, ceil))
    return tuple(axes)
