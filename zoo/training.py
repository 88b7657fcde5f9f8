"""The training loop: in-memory tensors, AdamW with a one-cycle schedule, tqdm progress."""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .atomic import atomic_write_text
from .data import Split, load, normalize
from .datasets import get_dataset_info
from .evaluation import evaluate
from .recipes import TrainConfig
from .records import card_input
from .registry import get_model
from .weights import library_versions, save_weights, stem, write_card


# tqdm's bar without its own rate: the postfix has images/s of training alone (tqdm's
# rate would count the evaluation after each epoch too, and show a second figure).
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def default_threads() -> int:
    """PyTorch's intra-op threads for training when --threads is not given: one per core this
    process may run on, less one left to the rest of the machine, and at least one.

    The intra-op threads meet at the end of every operation, so one of them sharing its core
    with another busy process holds all of them back. With every core taken (PyTorch's own
    default), one other busy process made an epoch 3-9x slower than a single thread on the
    2-core development machine (bench/train_speed.py --threads-study; issue 21, item 11);
    with one core left free, another process costs at most that core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def set_threads(threads: int | None) -> int:
    """Train with `threads` CPU threads (default_threads() when None); the count set."""
    torch.set_num_threads(threads or default_threads())
    return torch.get_num_threads()


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float  # training time of this epoch, evaluation excluded
    images_per_second: float


def to_tensors(split: Split, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = split.images[:limit], split.labels[:limit]
    return torch.from_numpy(normalize(images, split.info)), torch.from_numpy(labels)


def augment(x: torch.Tensor, cfg: TrainConfig, background: float, g: torch.Generator) -> torch.Tensor:
    """Random shifts (a padded random crop) and horizontal flips, for a whole batch at once."""
    n, _, h, w = x.shape
    if cfg.shift:
        s = cfg.shift
        padded = F.pad(x, (s, s, s, s), value=background)
        dy = torch.randint(0, 2 * s + 1, (n, 1, 1), generator=g)
        dx = torch.randint(0, 2 * s + 1, (n, 1, 1), generator=g)
        rows = dy + torch.arange(h).view(1, h, 1)  # (N, H, 1)
        cols = dx + torch.arange(w).view(1, 1, w)  # (N, 1, W)
        x = padded[torch.arange(n).view(n, 1, 1), 0, rows, cols].unsqueeze(1)  # (N, 1, H, W)
    if cfg.hflip:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    return x


def train_epoch(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    background: float,
    g: torch.Generator,
    bar: tqdm,
) -> tuple[float, float, float]:
    """One pass over (x, y); returns mean loss, accuracy and seconds."""
    net.train()
    order = torch.randperm(len(x), generator=g)
    total_loss = correct = seen = 0
    start = time.perf_counter()
    for i in range(0, len(x), cfg.batch_size):
        idx = order[i : i + cfg.batch_size]
        xb = augment(x[idx], cfg, background, g)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[idx]
        logits = net(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(idx)
        elapsed = time.perf_counter() - start
        bar.update(len(idx))
        bar.set_postfix({"loss": f"{total_loss / seen:.4f}", "acc": f"{correct / seen:.4f}",
                         "img/s": f"{seen / elapsed:.0f}"}, refresh=False)
    return total_loss / seen, correct / seen, time.perf_counter() - start


@dataclass
class TrainResult:
    model: nn.Module
    history: list[EpochMetrics]
    test_accuracy: float


def train(
    model_name: str,
    dataset: str,
    cfg: TrainConfig,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    target_accuracy: float | None = None,
) -> TrainResult:
    """Train `model_name` on `dataset`; stops early once `target_accuracy` is reached."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    train_split = load(dataset, "train", data_dir=data_dir, progress=progress)
    test_split = load(dataset, "test", data_dir=data_dir, progress=progress)
    x, y = to_tensors(train_split, cfg.train_limit)
    background = train_split.info.normalization.of_zero()
    net = get_model(model_name)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(x) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch
    )
    history: list[EpochMetrics] = []
    for epoch in range(1, cfg.epochs + 1):
        with tqdm(total=len(x), desc=f"{model_name} {dataset} epoch {epoch}/{cfg.epochs}",
                  unit="img", disable=not progress, leave=True, bar_format=BAR_FORMAT) as bar:
            loss, acc, seconds = train_epoch(net, x, y, cfg, optimizer, scheduler, background, g, bar)
            report = evaluate(net, test_split)
            # refresh=False: closing the bar draws this last state, once (drawn here too, a
            # log that is not a terminal showed the epoch's last line twice)
            bar.set_postfix({"loss": f"{loss:.4f}", "acc": f"{acc:.4f}", "test_acc": f"{report.accuracy:.4f}",
                             "img/s": f"{len(x) / seconds:.0f}"}, refresh=False)
        history.append(EpochMetrics(epoch, loss, acc, report.loss, report.accuracy, seconds,
                                    len(x) / seconds))
        if not progress:
            print(f"epoch {epoch}/{cfg.epochs}: loss {loss:.4f} train acc {acc:.4f} "
                  f"test acc {report.accuracy:.4f} ({seconds:.1f} s, {len(x) / seconds:.0f} img/s)",
                  flush=True)
        if target_accuracy is not None and report.accuracy >= target_accuracy:
            break
    return TrainResult(net.to(memory_format=torch.contiguous_format).eval(), history,
                       history[-1].test_accuracy)


def metrics_csv(history: list[EpochMetrics]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(asdict(history[0])))
    writer.writeheader()
    for row in history:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(row).items()})
    return buf.getvalue()


def plot_curves(history: list[EpochMetrics], title: str, path: Path) -> None:
    from .viz import save_figure

    save_figure(curves_figure(history, title), path, dpi=80)


def curves_figure(history: list[EpochMetrics], title: str):
    """Loss and accuracy per epoch, train and test. Every point is marked and labelled with
    its value when there are few, the epoch axis has whole epochs only, and the accuracy
    axis reaches at least one point beyond the values (within 0-100 %), so a one-epoch run is two labelled points, not dots on
    an axis from 0.96 to 1.04."""
    from matplotlib.ticker import MaxNLocator

    from .viz import pyplot

    plt = pyplot()
    epochs = [m.epoch for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    series = {
        ax_loss: [("train", [m.train_loss for m in history]), ("test", [m.test_loss for m in history])],
        ax_acc: [("train", [100 * m.train_accuracy for m in history]),
                 ("test", [100 * m.test_accuracy for m in history])],
    }
    for ax, lines in series.items():
        for (label, values), dy in zip(lines, (4, -12)):  # train's labels above, test's below
            ax.plot(epochs, values, "o-", label=label)
            if len(epochs) <= 3:
                for e, v in zip(epochs, values):
                    ax.annotate(f"{v:.2f}" if ax is ax_acc else f"{v:.3f}", (e, v), textcoords="offset points",
                                xytext=(6, dy), fontsize=8)
        ax.set_xlim(0.5, len(epochs) + 0.5)
        if len(epochs) <= 15:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_loss.set_ylim(0, 1.15 * max(v for _, values in series[ax_loss] for v in values))  # room for labels
    accuracies = [v for _, values in series[ax_acc] for v in values]
    low, high = min(accuracies), max(accuracies)
    pad = max(1.0, (high - low) * 0.1)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_outputs(result: TrainResult, model_name: str, dataset: str, cfg: TrainConfig,
                  out_dir: Path) -> dict:
    """Weights, model card, per-epoch metrics and the training curve, each written atomically."""
    info = get_dataset_info(dataset)
    name = stem(model_name, dataset)
    weights_file = f"{name}.safetensors"
    sha = save_weights(result.model, out_dir / weights_file,
                       metadata={"model": model_name, "dataset": dataset})
    card = {
        "model": model_name,
        "dataset": dataset,
        "test_accuracy": round(result.test_accuracy, 6),
        "num_params": sum(p.numel() for p in result.model.parameters()),
        "weights_file": weights_file,
        "weights_sha256": sha,
        "classes": list(info.classes),
        "input": card_input(info),
        "recipe": asdict(cfg),
        "epochs_run": len(result.history),
        "train_seconds": round(sum(m.seconds for m in result.history), 2),
        "versions": library_versions(),
    }
    write_card(out_dir / f"{name}.json", card)
    atomic_write_text(out_dir / f"{name}.metrics.csv", metrics_csv(result.history))
    plot_curves(result.history, f"{model_name} on {dataset}", out_dir / f"{name}.png")
    return card
