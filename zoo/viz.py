"""Pictures of what a network does: feature maps, first-layer filters, class probabilities,
and the classic hand-made edge filters.

The feature maps are PyTorch's own outputs of every convolution and pooling layer, taken
with forward hooks during one forward pass; a convolution's map is shown before its
activation (and after a batch norm applied directly to it). Every map of a figure shares
one colour scale, drawn as a colour bar: red is positive, blue negative, white zero. Only
NumPy, PyTorch and matplotlib are used (what `pip install ".[zoo]"` installs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_open

SIGNED_CMAP = "RdBu_r"  # red positive, white zero, blue negative
SIGN_LEGEND = "red > 0, blue < 0, white 0"

# The classic hand-made 3x3 filters (rows top to bottom). Positive responses mark edges of
# one polarity (bright to dark across the filter), negative ones the other.
EDGE_FILTERS: dict[str, np.ndarray] = {
    "vertical edge": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float32),
    "horizontal edge": np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], np.float32),
    "Sobel x": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32),
    "Sobel y": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32),
    "Scharr x": np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float32),
    "Scharr y": np.array([[3, 10, 3], [0, 0, 0], [-3, -10, -3]], np.float32),
}


@dataclass(frozen=True)
class VizInput:
    """The image a picture shows: its pixels at the model's size, as the model sees them;
    the image as given, when it came from a file; what was done to it; its true class."""

    pixels: np.ndarray  # (H, W) uint8
    label: str | None
    original: np.ndarray | None = None
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureMap:
    module: str  # the module whose output this is
    kind: str  # the layer that made it: Conv2d, MaxPool2d or AvgPool2d
    batch_norm: bool  # a batch norm applied directly to this convolution (its output is shown)
    activation: str | None  # the activation applied next (the map is shown before it), if any
    tensor: np.ndarray  # (C, H, W) for one image


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


MAP_LAYERS = ("Conv2d", "MaxPool2d", "AvgPool2d")
ACTIVATIONS = ("ReLU", "Tanh", "ReLU6", "LeakyReLU", "Sigmoid", "SiLU", "GELU")
FOLLOWERS = ("BatchNorm2d",) + ACTIVATIONS


def feature_maps(net, x: np.ndarray) -> list[FeatureMap]:
    """Outputs of every convolution and pooling layer of `net` for one image x (1, 1, H, W),
    in the order they run. A batch norm or activation that takes a map as its input (the
    very tensor, not a copy) is recognized as applied directly to that layer."""
    import torch

    calls: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []  # (name, kind, input, output)
    hooks = [module.register_forward_hook(
        lambda mod, inp, out, name=name: calls.append((name, type(mod).__name__, inp[0], out)))
        for name, module in net.named_modules() if type(module).__name__ in MAP_LAYERS + FOLLOWERS]
    try:
        with torch.no_grad():
            net.eval()(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for i, (name, kind, _, out) in enumerate(calls):
        if kind not in MAP_LAYERS:
            continue
        batch_norm = False
        follower = next(((n, k, o) for n, k, inp, o in calls[i + 1:] if inp is out), None)
        if follower and follower[1] == "BatchNorm2d":
            name, _, out = follower
            batch_norm = True
            follower = next(((n, k, o) for n, k, inp, o in calls[i + 1:] if inp is out), None)
        activation = follower[1] if follower and follower[1] in ACTIVATIONS else None
        maps.append(FeatureMap(name, kind, batch_norm, activation, out[0].numpy().copy()))
    return maps


def first_layer_filters(net) -> np.ndarray:
    """(M, C, kH, kW) weights of the network's first convolution."""
    from torch import nn

    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    return first.weight.detach().numpy().copy()


def correlate2d(image: np.ndarray, kernel: np.ndarray, *, padding: str = "valid", stride: int = 1) -> np.ndarray:
    """A convolution layer's operation (cross-correlation, as in every CNN library) of a 2-D
    image with a 2-D kernel; `padding` "same" pads (f - 1) / 2 zeros on each side."""
    if padding not in ("valid", "same"):
        raise ValueError(f"padding {padding!r}: expected 'valid' or 'same'")
    kh, kw = kernel.shape
    if padding == "same":
        image = np.pad(image, ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2)))
    windows = np.lib.stride_tricks.sliding_window_view(image, (kh, kw))[::stride, ::stride]
    return np.einsum("ijkl,kl->ij", windows, kernel)


def grid_shape(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n * 1.5))
    return math.ceil(n / cols), cols


def plot_tiles(tiles: np.ndarray, title: str, path: Path, colorbar_label: str) -> Path:
    return save_figure(tiles_figure(tiles, title, colorbar_label), path)


def tiles_figure(tiles: np.ndarray, title: str, colorbar_label: str):
    """Tiles (N, H, W) on one symmetric colour scale (red positive, blue negative), with a
    colour bar, so magnitudes can be compared across tiles."""
    plt = pyplot()
    rows, cols = grid_shape(len(tiles))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 1.4, 1.3 * rows + 0.9), squeeze=False)
    limit = float(np.abs(tiles).max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(tiles):
            image = ax.imshow(tiles[i], cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.04, pad=0.03)
    bar.set_label(f"{colorbar_label} ({SIGN_LEGEND})", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def plot_input(picture: VizInput, path: Path) -> Path:
    """The input as the model sees it (at its size, after any preparation), and beside it
    the image as given when it came from a file, with what was done to it."""
    plt = pyplot()
    h, w = picture.pixels.shape
    panels = [("as given", picture.original), ("as the model sees it", picture.pixels)] \
        if picture.original is not None else [(None, picture.pixels)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.4), squeeze=False)
    for ax, (what, pixels) in zip(axes[0], panels):
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        truth = f", true class: {picture.label}" if picture.label is not None else ""
        ax.set_title(f"{what}: {pixels.shape[1]}x{pixels.shape[0]}" if what else f"input {w}x{h}{truth}", fontsize=9)
        ax.axis("off")
    if picture.original is not None:
        lines = list(picture.steps) or ["used as given"]
        if picture.label is not None:
            lines.append(f"true class: {picture.label}")
        fig.suptitle("\n".join(lines), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


TRUE_COLOR = "tab:green"


def plot_probabilities(probabilities: np.ndarray, labels: list[str], title: str, path: Path,
                       true_index: int | None = None) -> Path:
    """A bar per class, the predicted one orange; the true class, when known, outlined in
    green and marked "true" (so a wrong answer shows where the right one stands)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.7))
    best = int(np.argmax(probabilities))
    colors = ["tab:orange" if i == best else "tab:blue" for i in range(len(labels))]
    bars = ax.bar(range(len(labels)), probabilities, color=colors)
    if true_index is not None:
        bars[true_index].set_edgecolor(TRUE_COLOR)
        bars[true_index].set_linewidth(2.5)
        ax.annotate("true", (true_index, min(float(probabilities[true_index]), 0.88)), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=8, color=TRUE_COLOR, fontweight="bold",
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    if true_index is not None:
        tick = ax.get_xticklabels()[true_index]
        tick.set_color(TRUE_COLOR)
        tick.set_fontweight("bold")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def map_title(name: str, fmap: FeatureMap) -> str:
    c, h, w = fmap.tensor.shape
    what = f"{fmap.module} ({fmap.kind}{' + batch norm' if fmap.batch_norm else ''})"
    when = f", before its {fmap.activation}" if fmap.activation else ""
    return f"{name}: {what}{when}\n{c} maps of {h}x{w}, tensor (N, {c}, {h}, {w})"


def render_model(net, card: dict, picture: VizInput, x: np.ndarray, out_dir: Path) -> list[Path]:
    """Every picture for one image (`x`: the picture's normalized input): input, feature
    maps, filters, probabilities."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{card['model']} ({card['dataset']})"
    written = [plot_input(picture, out_dir / "input.png")]
    for i, fmap in enumerate(feature_maps(net, x), start=1):
        written.append(plot_tiles(fmap.tensor, map_title(name, fmap),
                                  out_dir / f"features-{i:02d}-{fmap.module}.png", "activation"))
    filters = first_layer_filters(net)
    m, cin, kh, kw = filters.shape
    written.append(plot_tiles(filters[:, 0], f"{name}: first-layer filters, {m} of {kh}x{kw}x{cin}",
                              out_dir / "filters.png", "weight"))
    with torch.no_grad():
        probabilities = torch.softmax(net.eval()(torch.from_numpy(x)), dim=1).numpy()[0]
    classes = card["classes"]
    best = int(np.argmax(probabilities))
    title = f"{name}: predicted {classes[best]} ({probabilities[best]:.1%})"
    true_index = classes.index(picture.label) if picture.label in classes else None
    if true_index is not None:
        title += f"; true class {picture.label}" + ("" if true_index == best else
                                                     f" ({probabilities[true_index]:.1%})")
    title += "".join(f"\n(input {step})" for step in picture.steps)
    written.append(plot_probabilities(probabilities, classes, title, out_dir / "probabilities.png", true_index))
    return written


EDGE_VARIANTS = (("valid, stride 1", "valid", 1), ("same, stride 1", "same", 1), ("valid, stride 2", "valid", 2))


def draw_kernel(ax, kernel: np.ndarray, title: str) -> None:
    """The kernel's cells in the signed colours, each with its weight written in black or
    white, whichever stands out on that cell."""
    limit = float(np.abs(kernel).max()) or 1.0
    ax.imshow(kernel, cmap=SIGNED_CMAP, vmin=-limit, vmax=limit)
    for (r, c), value in np.ndenumerate(kernel):
        dark = abs(value) > 0.55 * limit  # the colour map's ends are dark red and dark blue
        ax.text(c, r, f"{value:g}", ha="center", va="center", fontsize=10, fontweight="bold",
                color="white" if dark else "black")
    ax.set_title(title, fontsize=8)


def framed(fig, spec):
    """An axes for an image: no ticks, but its frame."""
    ax = fig.add_subplot(spec)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def at_true_size(fig, spec, values: np.ndarray, field: int, **imshow_args):
    """`values` drawn centred in a field x field pixel canvas, framed, so that every image
    drawn this way has the same size per pixel whatever its own size."""
    ax = fig.add_subplot(spec)
    h, w = values.shape
    top, left = (field - h) / 2, (field - w) / 2
    image = ax.imshow(values, extent=(left, left + w, top + h, top), interpolation="nearest", **imshow_args)
    ax.add_patch(pyplot().Rectangle((left, top), w, h, fill=False, linewidth=0.8, edgecolor="black", clip_on=False))
    ax.set_xlim(0, field)
    ax.set_ylim(field, 0)
    ax.axis("off")
    return ax, image


def render_edges(pixels: np.ndarray, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_figure(edges_figure(pixels), out_dir / "edges.png")


def edges_figure(pixels: np.ndarray):
    """The hand-made filters, each at valid and same padding and stride 1 and 2, every output
    drawn at the same scale per pixel (so the shrinking shows), then its positive and
    negative edges. The input is drawn once, on top."""
    plt = pyplot()
    image = pixels.astype(np.float32) / 255.0
    n = image.shape[1]
    outputs = {name: [correlate2d(image, k, padding=p, stride=s) for _, p, s in EDGE_VARIANTS]
               for name, k in EDGE_FILTERS.items()}
    # Column widths in input pixels: the kernel gets room for its numbers, every output its width.
    widths = [n * 0.5] + [n] * (len(EDGE_VARIANTS) + 2) + [1.2]
    height = 1.9 * (len(EDGE_FILTERS) + 1) + 0.7
    fig = plt.figure(figsize=(12, height))
    grid = fig.add_gridspec(len(EDGE_FILTERS) + 1, len(widths), width_ratios=widths, wspace=0.2, hspace=0.4,
                            left=0.02, right=0.96, bottom=0.01, top=1 - 0.75 / height)
    top, _ = at_true_size(fig, grid[0, 2], pixels, n, cmap="gray", vmin=0, vmax=255)
    top.set_title(f"input {pixels.shape[0]}x{pixels.shape[1]} (every row filters this image)", fontsize=8)
    fig.text(0.5, 1 - 0.5 / height,
             f"outputs: {SIGN_LEGEND}; one colour scale per row (colour bar at the right); "
             "drawn at their true sizes: valid {}, same {}, stride 2: {}".format(
                 *(y.shape[0] for y in next(iter(outputs.values())))), ha="center", fontsize=9)
    for row, (name, kernel) in enumerate(EDGE_FILTERS.items(), start=1):
        draw_kernel(framed(fig, grid[row, 0]), kernel, f"{name} 3x3")
        ys = outputs[name]
        limit = float(max(np.abs(y).max() for y in ys)) or 1.0
        for col, ((label, _, _), y) in enumerate(zip(EDGE_VARIANTS, ys), start=1):
            ax, shown = at_true_size(fig, grid[row, col], y, n, cmap=SIGNED_CMAP, vmin=-limit, vmax=limit)
            ax.set_title(f"{label}: {y.shape[0]}x{y.shape[1]}", fontsize=8)
        same = ys[1]
        for col, (values, cmap, what) in enumerate(((np.maximum(same, 0), "Reds", "positive edges (red)"),
                                                   (np.maximum(-same, 0), "Blues", "negative edges (blue)")),
                                                  start=len(EDGE_VARIANTS) + 1):
            ax, _ = at_true_size(fig, grid[row, col], values, n, cmap=cmap, vmin=0, vmax=limit)
            ax.set_title(what, fontsize=8)
        bar = fig.colorbar(shown, cax=fig.add_subplot(grid[row, -1]))
        bar.ax.tick_params(labelsize=7)
    fig.suptitle("hand-made filters: out = floor((n + 2p - f) / s) + 1", fontsize=11, y=1 - 0.12 / height)
    return fig
