"""Pictures of what a network does: feature maps, first-layer filters, class probabilities,
and the classic hand-made edge filters.

The feature maps are the exported ONNX graph's own intermediate tensors, computed by the
NumPy reference (export.reference) and cross-checked against PyTorch's forward hooks, so
what you see is what the deployed graph computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open

SPATIAL_OPS = ("Conv", "MaxPool", "AveragePool")
FEATURE_ATOL = 1e-4

# The classic hand-made 3x3 filters (rows top to bottom). Positive responses mark edges of
# one polarity (dark to bright), negative ones the other.
EDGE_FILTERS: dict[str, np.ndarray] = {
    "vertical edge": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float32),
    "horizontal edge": np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], np.float32),
    "Sobel x": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32),
    "Sobel y": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32),
    "Scharr x": np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float32),
    "Scharr y": np.array([[3, 10, 3], [0, 0, 0], [-3, -10, -3]], np.float32),
}


@dataclass
class FeatureMap:
    module: str  # the PyTorch module whose output this is
    op_type: str  # the ONNX operator that computed it
    fused_bn: bool  # a batch norm the exporter folded into this convolution
    tensor: np.ndarray  # (C, H, W) for one image
    max_abs_vs_torch: float


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Write `fig` as a PNG atomically, then free it."""
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    pyplot().close(fig)
    return path


def feature_maps(net, proto, x: np.ndarray) -> list[FeatureMap]:
    """Outputs of every convolution and pooling node of the exported graph `proto` for one
    image x (1, 1, 28, 28), by the NumPy reference, each checked against PyTorch's `net`."""
    import torch

    from export import reference
    from export.exporter import source_module as module_of
    from export.metadata import INPUT_NAME

    values = reference.run(proto, {INPUT_NAME: x}, intermediates=True)
    nodes = [n for n in proto.graph.node if n.op_type in SPATIAL_OPS]
    modules = dict(net.named_modules())
    captured: dict[str, np.ndarray] = {}
    hooks = [modules[name].register_forward_hook(
        lambda mod, inp, out, name=name: captured.__setitem__(name, out.detach().numpy()))
        for name in {module_of(n) for n in nodes} if name in modules]
    try:
        with torch.no_grad():
            net.eval()(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for node in nodes:
        name = module_of(node)
        ours = values[node.output[0]]
        theirs = captured.get(name)
        if theirs is None or theirs.shape != ours.shape:
            raise AssertionError(f"{node.name} ({node.op_type}): no PyTorch output of the same shape from {name!r}")
        diff = float(np.abs(ours - theirs).max())
        if diff > FEATURE_ATOL * max(1.0, float(np.abs(theirs).max())):
            raise AssertionError(f"{node.name} ({node.op_type}) differs from PyTorch's {name} by {diff:.3g}")
        maps.append(FeatureMap(name, node.op_type, type(modules[name]).__name__.startswith("BatchNorm"),
                               ours[0], diff))
    return maps


def first_layer_filters(proto) -> np.ndarray:
    """(M, C, kH, kW) weights of the graph's first convolution (batch norm folded in)."""
    from onnx import numpy_helper

    weights = {init.name: init for init in proto.graph.initializer}
    first = next(n for n in proto.graph.node if n.op_type == "Conv")
    return numpy_helper.to_array(weights[first.input[1]])


def grid_shape(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n * 1.5))
    return math.ceil(n / cols), cols


def plot_tiles(tiles: np.ndarray, title: str, path: Path, cmap: str = "viridis", symmetric: bool = False) -> Path:
    plt = pyplot()
    rows, cols = grid_shape(len(tiles))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.4, 1.3 * rows + 0.6), squeeze=False)
    limit = float(np.abs(tiles).max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(tiles):
            kw = {"vmin": -limit, "vmax": limit} if symmetric else {}
            ax.imshow(tiles[i], cmap=cmap, interpolation="nearest", **kw)
            ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_input(pixels: np.ndarray, title: str, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 3.2))
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_probabilities(probabilities: np.ndarray, labels: list[str], title: str, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    best = int(np.argmax(probabilities))
    colors = ["tab:orange" if i == best else "tab:blue" for i in range(len(labels))]
    ax.bar(range(len(labels)), probabilities, color=colors)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def render_model(net, card: dict, pixels: np.ndarray, x: np.ndarray, out_dir: Path, label: str | None) -> list[Path]:
    """Every picture for one image: input, feature maps, filters, probabilities."""
    from export.exporter import to_onnx

    proto = to_onnx(net)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{card['model']} ({card['dataset']})"
    written = [plot_input(pixels, "input 28x28" + (f", true class: {label}" if label else ""),
                          out_dir / "input.png")]
    for i, fmap in enumerate(feature_maps(net, proto, x), start=1):
        c, h, w = fmap.tensor.shape
        what = f"{fmap.op_type}{' (batch norm folded in)' if fmap.fused_bn else ''}"
        title = f"{name}: {fmap.module}, {what}: {c} maps of {h}x{w}  (N, {c}, {h}, {w})"
        written.append(plot_tiles(fmap.tensor, title, out_dir / f"features-{i:02d}-{fmap.module}.png"))
    filters = first_layer_filters(proto)
    m, cin, kh, kw = filters.shape
    written.append(plot_tiles(filters[:, 0], f"{name}: first-layer filters, {m} of {kh}x{kw}x{cin}",
                              out_dir / "filters.png", cmap="RdBu_r", symmetric=True))
    import torch

    with torch.no_grad():
        probabilities = torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()[0]
    best = int(np.argmax(probabilities))
    written.append(plot_probabilities(probabilities, card["classes"],
                                      f"{name}: predicted {card['classes'][best]} ({probabilities[best]:.1%})",
                                      out_dir / "probabilities.png"))
    return written


def render_edges(pixels: np.ndarray, out_dir: Path) -> Path:
    """The hand-made filters through the reference convolution: valid vs same padding and
    stride 1 vs 2, then the positive and negative edges, output sizes in the titles."""
    from export.reference import conv

    plt = pyplot()
    x = (pixels.astype(np.float32) / 255.0)[None, None]
    variants = [("valid, stride 1", "VALID", 1), ("same, stride 1", "SAME_UPPER", 1), ("valid, stride 2", "VALID", 2)]
    fig, axes = plt.subplots(len(EDGE_FILTERS), 2 + len(variants) + 2, figsize=(15, 2.2 * len(EDGE_FILTERS)))
    for row, (name, kernel) in zip(axes, EDGE_FILTERS.items()):
        row[0].imshow(pixels, cmap="gray", interpolation="nearest")
        row[0].set_title(f"input {pixels.shape[0]}x{pixels.shape[1]}", fontsize=8)
        row[1].imshow(kernel, cmap="RdBu_r", vmin=-np.abs(kernel).max(), vmax=np.abs(kernel).max())
        row[1].set_title(f"{name} 3x3", fontsize=8)
        for i, kv in enumerate(kernel.ravel()):
            row[1].text(i % 3, i // 3, f"{kv:g}", ha="center", va="center", fontsize=7)
        outputs = {}
        for ax, (label, auto_pad, stride) in zip(row[2:], variants):
            y = conv(x, kernel[None, None], auto_pad=auto_pad, strides=(stride, stride))[0, 0]
            outputs[label] = y
            limit = float(np.abs(y).max()) or 1.0
            ax.imshow(y, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"{label}: {y.shape[0]}x{y.shape[1]}", fontsize=8)
        same = outputs["same, stride 1"]
        row[-2].imshow(np.maximum(same, 0), cmap="Reds", interpolation="nearest")
        row[-2].set_title("positive edges", fontsize=8)
        row[-1].imshow(np.maximum(-same, 0), cmap="Blues", interpolation="nearest")
        row[-1].set_title("negative edges", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle("hand-made filters: out = floor((n + 2p - f) / s) + 1 -> valid 26, same 28, stride 2: 13",
                 fontsize=11)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out_dir / "edges.png")
