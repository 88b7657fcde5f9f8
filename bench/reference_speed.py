"""The NumPy reference's full forward pass over the 10,000 test images, per model, next to
onnxruntime and PyTorch measured in the same run. Target: reference within 10x of
onnxruntime for every model.

    python bench/reference_speed.py [--dataset mnist] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

from export import reference
from export.exporter import to_onnx
from export.metadata import INPUT_NAME, OUTPUT_NAME
from zoo.data import load, normalize
from zoo.weights import load_pretrained, shipped

TARGET_RATIO = 10.0


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


BATCH = 1000  # all three run the 10,000 images as ten batches of 1,000


def bench_model(model: str, dataset: str, images: np.ndarray, repeats: int) -> dict:
    net, _ = load_pretrained(model, dataset)
    proto = to_onnx(net)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x_torch = torch.from_numpy(images)

    batches = [slice(i, i + BATCH) for i in range(0, len(images), BATCH)]

    def run_torch():
        with torch.inference_mode():
            for b in batches:
                net(x_torch[b])

    def run_ort():
        for b in batches:
            sess.run([OUTPUT_NAME], {INPUT_NAME: images[b]})

    def run_reference():
        for b in batches:
            reference.run(proto, {INPUT_NAME: images[b]})

    run_ort(), run_reference()  # warm up: first-run allocation is not what we measure
    timings = {"onnxruntime": best_of(repeats, run_ort), "torch": best_of(repeats, run_torch),
               "reference": best_of(repeats, run_reference)}
    ratio = timings["reference"] / timings["onnxruntime"]
    return {"model": model, "dataset": dataset, "seconds": timings,
            "reference_over_onnxruntime": ratio, "meets_target": ratio <= TARGET_RATIO}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", help="test set to run (default: mnist)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default: 3)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    split = load(args.dataset, "test", progress=False)
    images = normalize(split.images, split.info)
    models = [m for m, d in sorted(shipped()) if d == args.dataset]
    print(f"full forward pass over {len(images):,} {args.dataset} test images in batches of {BATCH:,}, "
          f"best of {args.repeats}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'model':<16}{'onnxruntime':>13}{'torch':>10}{'reference':>11}{'ref/ort':>9}")
    rows = []
    for model in models:
        row = bench_model(model, args.dataset, images, args.repeats)
        s = row["seconds"]
        print(f"{model:<16}{s['onnxruntime']:>12.3f}s{s['torch']:>9.3f}s{s['reference']:>10.3f}s"
              f"{row['reference_over_onnxruntime']:>8.2f}x", flush=True)
        rows.append(row)
    figures = {"dataset": args.dataset, "images": len(images), "target_ratio": TARGET_RATIO, "models": rows}
    print(json.dumps(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
