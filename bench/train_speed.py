"""Wall time for lenet5 to reach 99.0 % MNIST test accuracy: our recipe next to a plain
PyTorch loop measured in the same run (the ratio is what to compare across machines).

    python bench/train_speed.py [--target 0.99] [--max-epochs 10] [--json out.json]

Only training time counts; the per-epoch test evaluation is excluded from both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default: 0.99)")
    parser.add_argument("--max-epochs", type=int, default=10, help="baseline epoch cap (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
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
