"""python -m zoo {list,summary,train,evaluate,viz} ...

Models, training, evaluation and pictures. Arguments are checked before PyTorch is imported,
so a mistyped name is refused at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .cli import CliError, check_at_least, exit_process, run_command, version_text
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


def check_train_args(args: argparse.Namespace) -> None:
    """Every size and rate of `train`, refused in our words before torch loads and the data
    is read (a batch of 0 was a ZeroDivisionError deep in the loop)."""
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--train-limit", args.train_limit), ("--threads", args.threads)):
        check_at_least(flag, value, 1, "a whole number of at least 1")
    if args.lr is not None and not args.lr > 0:
        raise CliError(f"--lr {args.lr}: expected a learning rate above 0")


def cmd_train(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models())
    _check_choice("dataset", args.dataset, list_datasets())
    check_train_args(args)
    from .records import recipe_for
    from .training import set_threads, train, write_outputs

    cfg = recipe_for(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                     lr=args.lr, seed=args.seed, train_limit=args.train_limit)
    threads = set_threads(args.threads)
    print(f"training {args.model} on {args.dataset} with {cfg}, {threads} thread{'s' * (threads != 1)}", flush=True)
    result = train(args.model, args.dataset, cfg, data_dir=args.data_dir,
                   progress=not args.no_progress)
    card = write_outputs(result, args.model, args.dataset, cfg, Path(args.out))
    print(f"test accuracy {100 * card['test_accuracy']:.2f}% after {card['epochs_run']} epochs "
          f"({card['train_seconds']:.1f} s of training); wrote {args.out}/{card['weights_file']} "
          f"and its card, metrics and curve")


def load_model(args: argparse.Namespace):
    """(net, card, dataset) for `evaluate` and `viz`: the shipped weights for --dataset
    (from --weights DIR when it is a folder laid out like zoo/weights), or the --weights
    FILE that `python -m zoo train` wrote (its card names the model and the dataset)."""
    from .weights import load_pretrained, load_weights_file

    weights = Path(args.weights) if args.weights else None
    if weights is None or weights.is_dir():
        dataset = args.dataset or "mnist"
        net, card = load_pretrained(args.model, dataset, directory=weights)
        return net, card, dataset
    net, card = load_weights_file(weights)
    if card["model"] != args.model:
        raise CliError(f"{args.weights}: its model card says {card['model']}, not {args.model}")
    if args.dataset not in (None, card["dataset"]):
        raise CliError(f"{args.weights}: trained on {card['dataset']} (its model card says), not {args.dataset}")
    return net, card, card["dataset"]


def cmd_evaluate(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models())
    if args.dataset is not None:
        _check_choice("dataset", args.dataset, list_datasets())
    from .data import load
    from .evaluation import evaluate, format_report

    net, card, dataset = load_model(args)
    report = evaluate(net, load(dataset, "test", data_dir=args.data_dir))
    source = f" ({args.weights})" if args.weights else ""
    print(format_report(report, f"{args.model} on {dataset}{source}"))


def load_image(args: argparse.Namespace, dataset: str, prepared: bool):
    """A viz.VizInput: the --image PATH or test-set --index I, at the dataset's image size; an image file
    `prepared` as the server prepares it for a model trained on `dataset` (zoo.preprocess:
    inverted when its background is light, framed when a digit is not yet at the size)."""
    from .datasets import get_dataset_info
    from .viz import VizInput

    size = get_dataset_info(dataset).image_shape[1:]
    if args.image:
        from PIL import Image, UnidentifiedImageError

        from .preprocess import Preprocessing, fit, prepare

        try:
            with Image.open(args.image) as image:
                gray = image.convert("L")
        except (OSError, UnidentifiedImageError) as e:
            raise CliError(f"{args.image}: cannot read as an image ({e})") from None
        options = Preprocessing(auto_invert=not args.keep_polarity, frame=not args.keep_framing)
        done = prepare(gray, dataset, size, options) if prepared else None
        image = done.image if done else gray
        steps = done.steps(dataset) if done else []
        if image.size != (size[1], size[0]):
            steps.append(f"resized from {image.width}x{image.height} to {size[1]}x{size[0]}")
        return VizInput(np.asarray(fit(image, size), dtype=np.uint8), None, np.asarray(gray, dtype=np.uint8),
                        tuple(steps))
    from .data import load

    split = load(dataset, "test", data_dir=args.data_dir)
    if not 0 <= args.index < len(split.images):
        raise CliError(f"--index {args.index} is out of range 0..{len(split.images) - 1}")
    return VizInput(split.images[args.index], split.info.classes[split.labels[args.index]])


def cmd_viz(args: argparse.Namespace) -> None:
    _check_choice("model", args.model, list_models() + ["edges"])
    if args.dataset is not None:
        _check_choice("dataset", args.dataset, list_datasets())
    if (args.image is None) == (args.index is None):
        raise CliError("give exactly one of --image PATH or --index I")
    check_at_least("--index", args.index, 0, "a test-set index of at least 0")
    if args.weights and args.model == "edges":
        raise CliError("--weights is for a model; the edge filters are hand-made")
    if args.name and not args.weights:
        raise CliError("--name goes with --weights (the shipped weights' pictures keep their names)")
    from . import viz

    if args.model == "edges":
        picture = load_image(args, args.dataset or "mnist", prepared=False)
        out = Path(args.out) / f"edges-{image_source(args)}"
        written = [viz.render_edges(picture.pixels, out)]
    else:
        from .datasets import get_dataset_info
        from .weights import check_not_shipped_name, stem

        trained = args.weights and not Path(args.weights).is_dir()
        name = check_not_shipped_name(args.weights, args.name, "would draw its pictures under the name") \
            if trained else None
        net, card, dataset = load_model(args)
        picture = load_image(args, dataset, prepared=True)
        x = get_dataset_info(dataset).normalization.apply(picture.pixels[None, None])
        out = Path(args.out) / f"{name or stem(args.model, dataset)}-{image_source(args)}"
        written = viz.render_model(net, card, picture, x, out)
    for path in written:
        print(f"wrote {path}")


def image_source(args: argparse.Namespace) -> str:
    return Path(args.image).stem if args.image else f"test{args.index}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    parser.add_argument("--version", action="version", version=version_text("python -m zoo"))
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
    p.add_argument("--threads", type=int, help="CPU threads (default: see zoo/training.py, default_threads)")
    p.add_argument("--out", default="runs", help="output directory (default: runs)")
    p.add_argument("--data-dir", help=data_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy, per-class accuracy, confusion matrix")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--dataset", help="mnist or fashion-mnist (default: mnist, or the --weights card's)")
    p.add_argument("--weights", help="a .safetensors file written by `python -m zoo train`, its model card "
                   "beside it, or a directory laid out like zoo/weights (default: the shipped weights)")
    p.add_argument("--data-dir", help=data_help)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("viz", help="pictures: feature maps, filters, probabilities; or 'edges'")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}; or edges, for the hand-made filters")
    p.add_argument("--dataset", help="mnist or fashion-mnist (default: mnist, or the --weights card's)")
    p.add_argument("--weights", help="a .safetensors file written by `python -m zoo train`, its model "
                   "card beside it (default: the shipped weights)")
    p.add_argument("--name", help="name of the output folder, with --weights (default: the weights file's "
                   "name, unless that is a shipped model's)")
    p.add_argument("--image", help="an image file (PNG or JPEG), made grayscale and prepared as the server "
                   "prepares it: inverted on a light background, digits framed as MNIST's (default: none)")
    p.add_argument("--keep-polarity", action="store_true",
                   help="never invert an --image on a light background (default: invert it, and say so)")
    p.add_argument("--keep-framing", action="store_true",
                   help="never crop and centre a digit by mass (default: frame images not yet at the model's size)")
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
