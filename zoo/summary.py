"""A Keras-like layer table, with every output size derived from the formula

    out = floor((n + 2p - d(f - 1) - 1) / s) + 1     (= floor((n + 2p - f) / s) + 1 for d = 1)

and checked against a real forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a convolution or pooling window sliding over `n` positions."""
    span = n + 2 * p - d * (f - 1) - 1
    if span < 0:
        raise ValueError(f"window of size {f} (dilation {d}) does not fit input {n} with padding {p}")
    out = (math.ceil if ceil_mode else math.floor)(span / s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1  # the last window would start in the right padding: PyTorch and ONNX drop it
    return out


def conv_params(f: int, c_in: int, c_out: int, *, bias: bool = True, groups: int = 1) -> int:
    """Parameters of a conv layer: c_out filters of f x f x (c_in / groups), plus biases."""
    return c_out * (f * f * c_in // groups + (1 if bias else 0))


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


@dataclass
class LayerRow:
    name: str
    kind: str
    kernel: tuple[int, int] | None
    stride: tuple[int, int] | None
    padding: tuple[int, int] | None
    output_shape: tuple[int, ...]  # without the batch axis
    params: int


@dataclass
class Summary:
    input_shape: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int


def output_hw(module: nn.Module, in_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) out of a Conv2d, MaxPool2d or AvgPool2d for (H, W) in, by the formula."""
    k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    p = _pair(module.padding)
    d = _pair(getattr(module, "dilation", 1))
    ceil = getattr(module, "ceil_mode", False)
    return tuple(conv_output_size(in_hw[i], k[i], p[i], s[i], d[i], ceil) for i in range(2))


def spatial_size(in_hw: tuple[int, int], *layers: nn.Module) -> tuple[int, int]:
    """(H, W) after the spatial layers, in order: what a model's head is sized from."""
    for layer in layers:
        in_hw = output_hw(layer, in_hw)
    return in_hw


def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> Summary:
    """Run one zero image of `input_shape` (C, H, W) through `model`, recording each leaf
    layer; raises AssertionError if a spatial layer's size disagrees with the formula."""
    rows: list[LayerRow] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        out_shape = tuple(output.shape[1:])
        kernel = stride = padding = None
        if isinstance(module, _SPATIAL):
            kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            padding = _pair(module.padding)
            expected = output_hw(module, tuple(inputs[0].shape[-2:]))
            assert expected == out_shape[-2:], (
                f"{names[module]}: formula gives {expected}, forward pass gave {out_shape[-2:]}"
            )
        rows.append(LayerRow(names[module], type(module).__name__, kernel, stride, padding,
                             out_shape, sum(p.numel() for p in module.parameters(recurse=False))))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == sum(r.params for r in rows), "some parameters live outside the leaf layers"
    return Summary(tuple(input_shape), rows, total, trainable)


def _fmt_pair(v: tuple[int, int] | None) -> str:
    if v is None:
        return ""
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def format_summary(summary: Summary, title: str = "") -> str:
    header = ("layer", "type", "kernel", "stride", "pad", "output shape", "params")
    body = [
        (r.name, r.kind, _fmt_pair(r.kernel) and "x".join(map(str, r.kernel)), _fmt_pair(r.stride),
         _fmt_pair(r.padding), "(N, " + ", ".join(map(str, r.output_shape)) + ")", f"{r.params:,}")
        for r in summary.rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i == len(cells) - 1 else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    shape = "(N, " + ", ".join(map(str, summary.input_shape)) + ")"
    out = [f"{title}  input {shape}" if title else f"input {shape}", rule, line(header), rule]
    out += [line(row) for row in body]
    out += [rule, f"total params: {summary.total_params:,} "
            f"({summary.total_params * 4 / 1024:,.1f} KiB as float32)",
            f"trainable params: {summary.trainable_params:,}"]
    return "\n".join(out)
