"""python -m zoo {list,summary,train,evaluate,viz} ...

Models, training, evaluation and pictures. Arguments are checked before PyTorch is imported,
so a mistyped name is refused at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .cli import CliError, exit_process, run_command
from .datasets import list_datasets
from .recipes import TrainConfig
from .registry import list_models

# What the zoo extra installs (pip install ".[zoo]"), by import name; a lean serve install
# has none of them.
ZOO_EXTRA_MODULES = ("torch", "safetensors", "tqdm", "matplotlib", "platformdirs", "PIL")


def _check_choice(kind: str, value: str, valid: list[str]) -> str:
    if value not in valid:
        raise CliError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(valid)}")
    return value


def cmd_list(args: argparse.Namespace) -> None:
    from .weights import shipped

    have = set(shipped())
    for name in list_models():
        marks = [d for d in list_datasets() if (name, d) in have]
        print(f"{name:<16} shipped weights: {', '.join(marks) or 'none'}")


def cmd_summary(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models())
    from .records import INPUT_SHAPE
    from .registry import get_model
    from .summary import format_summary, summarize

    print(format_summary(summarize(get_model(args.model), INPUT_SHAPE), title=args.model))


def cmd_train(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models())
    _check_choice("dataset", args.dataset, list_datasets())
    from .records import recipe_for
    from .training import train, write_outputs

    cfg = recipe_for(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                     lr=args.lr, seed=args.seed, train_limit=args.train_limit)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"training {args.model} on {args.dataset} with {cfg}", flush=True)
    result = train(args.model, args.dataset, cfg, data_dir=args.data_dir,
                   progress=not args.no_progress)
    card = write_outputs(result, args.model, args.dataset, cfg, Path(args.out))
    print(f"test accuracy {100 * card['test_accuracy']:.2f}% after {card['epochs_run']} epochs "
          f"({card['train_seconds']:.1f} s of training); wrote {args.out}/{card['weights_file']} "
          f"and its card, metrics and curve")


def cmd_evaluate(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models())
    _check_choice("dataset", args.dataset, list_datasets())
    from .data import load
    from .evaluation import evaluate, format_report
    from .weights import load_pretrained

    net, card = load_pretrained(args.model, args.dataset, directory=args.weights)
    report = evaluate(net, load(args.dataset, "test", data_dir=args.data_dir))
    print(format_report(report, f"{args.model} on {args.dataset}"))


def load_image(args: argparse.Namespace, dataset: str) -> tuple[np.ndarray, str | None]:
    """(28, 28) uint8 pixels from --image PATH or test-set --index I, and the true label."""
    if args.image:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(args.image) as image:
                gray = image.convert("L").resize((28, 28), Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError) as e:
            raise CliError(f"{args.image}: cannot read as an image ({e})") from None
        return np.asarray(gray, dtype=np.uint8), None
    from .data import load

    split = load(dataset, "test", data_dir=args.data_dir)
    if not 0 <= args.index < len(split.images):
        raise CliError(f"--index {args.index} is out of range 0..{len(split.images) - 1}")
    return split.images[args.index], split.info.classes[split.labels[args.index]]


def cmd_viz(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models() + ["edges"])
    if args.dataset is not None:
        _check_choice("dataset", args.dataset, list_datasets())
    if (args.image is None) == (args.index is None):
        raise CliError("give exactly one of --image PATH or --index I")
    if args.weights and args.model == "edges":
        raise CliError("--weights is for a model; the edge filters are hand-made")
    from . import viz

    if args.model == "edges":
        pixels, label = load_image(args, args.dataset or "mnist")
        out = Path(args.out) / f"edges-{image_source(args)}"
        written = [viz.render_edges(pixels, out)]
    else:
        from .data import normalize
        from .datasets import get_dataset_info

        net, card, name = viz_model(args)
        pixels, label = load_image(args, card["dataset"])
        x = normalize(pixels[None], get_dataset_info(card["dataset"]))
        written = viz.render_model(net, card, pixels, x, Path(args.out) / f"{name}-{image_source(args)}", label)
    for path in written:
        print(f"wrote {path}")


def image_source(args: argparse.Namespace) -> str:
    return Path(args.image).stem if args.image else f"test{args.index}"


def viz_model(args: argparse.Namespace):
    """(net, card, name for the output folder): the shipped weights for --dataset, or the
    --weights file that `python -m zoo train` wrote (its card names model and dataset)."""
    from .weights import load_pretrained, load_weights_file

    if not args.weights:
        dataset = args.dataset or "mnist"
        net, card = load_pretrained(args.model, dataset)
        return net, card, f"{args.model}-{dataset}"
    net, card = load_weights_file(args.weights)
    if card["model"] != args.model:
        raise CliError(f"{args.weights}: its model card says {card['model']}, not {args.model}")
    if args.dataset not in (None, card["dataset"]):
        raise CliError(f"{args.weights}: trained on {card['dataset']} (its model card says), not {args.dataset}")
    return net, card, Path(args.weights).stem


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the models and their shipped weights")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("summary", help="layer table: kernels, strides, padding, shapes, params")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}")
    p.set_defaults(func=cmd_summary)

    data_help = "dataset directory (default: $ZOO_DATA_DIR, else a per-user cache directory)"
    defaults = TrainConfig()
    p = sub.add_parser("train", help="train a model and write weights, card, metrics, curve")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default: mnist)")
    p.add_argument("--epochs", type=int, help="epochs (default: the shipped recipe's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the recipe's, "
                   f"usually {defaults.batch_size})")
    p.add_argument("--lr", type=float, help="peak one-cycle learning rate (default: the recipe's, "
                   f"usually {defaults.lr})")
    p.add_argument("--seed", type=int, help=f"random seed (default: {defaults.seed})")
    p.add_argument("--train-limit", type=int, help="use only the first N training images "
                   "(default: all 60,000)")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's, one per core)")
    p.add_argument("--out", default="runs", help="output directory (default: runs)")
    p.add_argument("--data-dir", help=data_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy, per-class accuracy, confusion matrix")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist (default: mnist)")
    p.add_argument("--weights", help="weights directory (default: the shipped zoo/weights)")
    p.add_argument("--data-dir", help=data_help)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("viz", help="pictures: feature maps, filters, probabilities; or 'edges'")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}; or edges, for the hand-made filters")
    p.add_argument("--dataset", help="mnist or fashion-mnist (default: mnist, or the --weights card's)")
    p.add_argument("--weights", help="a .safetensors file written by `python -m zoo train`, its model "
                   "card beside it (default: the shipped weights)")
    p.add_argument("--image", help="an image file (PNG or JPEG), made grayscale 28x28 (default: none)")
    p.add_argument("--index", type=int, help="a test-set image by index (default: none)")
    p.add_argument("--out", default="viz", help="output directory (default: viz)")
    p.add_argument("--data-dir", help=data_help)
    p.set_defaults(func=cmd_viz)
    return parser


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install, when `e` is a package of the zoo extra."""
    if (e.name or "").split(".")[0] not in ZOO_EXTRA_MODULES:
        return None
    return (f"error: python -m zoo needs {e.name}, which this environment lacks; install the "
            f"zoo extra: pip install -c constraints.txt \".[zoo]\"")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(lambda: args.func(args))
    except ModuleNotFoundError as e:
        line = missing_extra(e)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_process(main())
