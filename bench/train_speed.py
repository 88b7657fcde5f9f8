"""Wall time for lenet5 to reach 99.0 % MNIST test accuracy: our recipe next to a plain
PyTorch loop measured in the same run (the ratio is what to compare across machines).

    python bench/train_speed.py [--target 0.99] [--max-epochs 10] [--json out.json]

Only training time counts; the per-epoch test evaluation is excluded from both.

    python bench/train_speed.py --threads-study [--images 8192] [--rounds 3] [--json out.json]

measures instead what `python -m zoo train` does with its thread count: one epoch of lenet5
on `--images` MNIST images, in a fresh process each, with its default threads, --threads 1
and --threads 2, on the machine as it is ("quiet") and with one core kept busy by a spinning
process, in alternating order within each round; it reports the median images/s of each, the
ratios to --threads 1 under the same load, and what the machine ran besides (load average,
busy cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from zoo import get_model
from zoo.data import load, normalize
from zoo.evaluation import predict_logits
from zoo.recipes import TrainConfig
from zoo.training import train

# The fast recipe: big enough batches to keep both cores busy, one-cycle AdamW with a high
# peak learning rate, data pre-normalized in memory (no DataLoader, no per-sample work).
FAST = TrainConfig(epochs=3, batch_size=128, lr=4e-3)


def baseline(target: float, max_epochs: int, seed: int) -> dict:
    """The loop a tutorial writes: DataLoader over tensors, batch 64, Adam at 1e-3."""
    torch.manual_seed(seed)
    train_split, test_split = load("mnist", "train"), load("mnist", "test")
    x = torch.from_numpy(normalize(train_split.images, train_split.info))
    y = torch.from_numpy(train_split.labels)
    x_test = normalize(test_split.images, test_split.info)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    net = get_model("lenet5")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    seconds, accuracy, epochs = 0.0, 0.0, 0
    while accuracy < target and epochs < max_epochs:
        net.train()
        start = time.perf_counter()
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        epochs += 1
        predictions = predict_logits(net, x_test).argmax(1).numpy()
        accuracy = float((predictions == test_split.labels).mean())
        print(f"  baseline epoch {epochs}: test acc {accuracy:.4f}, {seconds:.1f} s", flush=True)
    return {"seconds": seconds, "epochs": epochs, "accuracy": accuracy, "reached": accuracy >= target}


def ours(target: float, seed: int) -> dict:
    cfg = TrainConfig(**{**FAST.__dict__, "seed": seed})
    result = train("lenet5", "mnist", cfg, progress=False, target_accuracy=target)
    seconds = sum(m.seconds for m in result.history)
    return {"seconds": seconds, "epochs": len(result.history), "accuracy": result.test_accuracy,
            "reached": result.test_accuracy >= target, "recipe": cfg.__dict__}


ROOT = Path(__file__).resolve().parent.parent
EPOCH_LINE = re.compile(r"epoch 1/1: .*\(([\d.]+) s, (\d+) img/s\)")
THREAD_LINE = re.compile(r", (\d+) threads?$", re.M)


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


@contextlib.contextmanager
def one_core_busy():
    """Another process spinning on one core for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it be scheduled before the measurement starts
        yield
    finally:
        spinner.kill()
        spinner.wait(10)


def train_epoch(threads: int | None, images: int, out: Path) -> dict:
    """One epoch of `python -m zoo train lenet5` on `images` images in a fresh process, with
    `threads` (None: its default); its images/s of training alone, from its own log line,
    and the machine's busy cores over the run."""
    argv = [sys.executable, "-m", "zoo", "train", "lenet5", "--epochs", "1", "--train-limit", str(images),
            "--no-progress", "--out", str(out)] + (["--threads", str(threads)] if threads else [])
    busy0, total0 = cpu_times()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=900)
    busy1, total1 = cpu_times()
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr}")
    seconds, per_s = EPOCH_LINE.search(result.stdout).groups()
    used = THREAD_LINE.search(result.stdout)
    return {"images_per_s": float(per_s), "epoch_s": float(seconds), "threads_used": int(used.group(1)) if used else None,
            "busy_cores": round((busy1 - busy0) / (total1 - total0) * os.cpu_count(), 2)}


def threads_study(images: int, rounds: int, options: list[int | None]) -> dict:
    """Every thread option under both loads, alternating the order from round to round."""
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for load in (("quiet", "busy") if r % 2 == 0 else ("busy", "quiet")):
                order = options if r % 2 == 0 else list(reversed(options))
                with (one_core_busy() if load == "busy" else contextlib.nullcontext()):
                    for threads in order:
                        key = f"{load} {'default' if threads is None else f'--threads {threads}'}"
                        loadavg = os.getloadavg()[0]
                        run = train_epoch(threads, images, Path(tmp) / f"run{r}")
                        run["loadavg_1min_before"] = round(loadavg, 2)
                        runs.setdefault(key, []).append(run)
                        print(f"  round {r + 1} {key:<20} {run['images_per_s']:>7,.0f} img/s  "
                              f"({run['threads_used']} thread{'s' * (run['threads_used'] != 1)}; machine busy {run['busy_cores']} of "
                              f"{os.cpu_count()} cores; load {loadavg:.2f} before)", flush=True)
    medians = {key: statistics.median(r["images_per_s"] for r in rs) for key, rs in runs.items()}
    ratios = {key: medians[key] / medians[f"{key.split()[0]} --threads 1"] for key in medians}
    return {"images": images, "rounds": rounds, "cores": os.cpu_count(), "runs": runs,
            "median_images_per_s": medians, "ratio_to_threads_1_same_load": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads-study", action="store_true",
                        help="measure the training thread counts instead, quiet and with one core busy")
    parser.add_argument("--images", type=int, default=8192, help="images in the study's epoch (default: 8192)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the study (default: 3)")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default: 0.99)")
    parser.add_argument("--max-epochs", type=int, default=10, help="baseline epoch cap (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    if args.threads_study:
        print(f"one epoch of lenet5 on {args.images} MNIST images per run, {args.rounds} rounds, "
              f"{os.cpu_count()} cores", flush=True)
        figures = threads_study(args.images, args.rounds, [None, 1, 2])
        for key, median in figures["median_images_per_s"].items():
            print(f"{key:<20} median {median:>7,.0f} img/s  {figures['ratio_to_threads_1_same_load'][key]:.2f}x "
                  "of --threads 1 under the same load")
        print(json.dumps({k: v for k, v in figures.items() if k != "runs"}))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
        return 0
    torch.set_num_threads(torch.get_num_threads())
    print(f"lenet5 on MNIST to {100 * args.target:.1f} % test accuracy, {torch.get_num_threads()} threads")
    print("ours:", flush=True)
    mine = ours(args.target, args.seed)
    print(f"  {mine['epochs']} epochs, {mine['seconds']:.1f} s, test acc {mine['accuracy']:.4f}")
    print("baseline:", flush=True)
    base = baseline(args.target, args.max_epochs, args.seed)
    ratio = base["seconds"] / mine["seconds"]
    figures = {"ours": mine, "baseline": base, "speedup_vs_baseline": ratio,
               "target": args.target, "threads": torch.get_num_threads(),
               "meets_25s_target": mine["reached"] and mine["seconds"] <= 25.0}
    print(f"\nours: {mine['seconds']:.1f} s ({mine['epochs']} epochs, {100 * mine['accuracy']:.2f} %)"
          f" | baseline: {base['seconds']:.1f} s ({base['epochs']} epochs, {100 * base['accuracy']:.2f} %)"
          f" | baseline / ours = {ratio:.2f}x")
    print(json.dumps(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0 if mine["reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
