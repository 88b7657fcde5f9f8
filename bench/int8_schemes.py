"""Why --int8 quantizes as it does: one shipped model quantized with each static QDQ scheme
onnxruntime offers for CPUs, all calibrated on the same training images, then run as users
run it (onnxruntime optimized, fused int8 kernels) on the test set and compared with the
NumPy reference, which computes what the ONNX spec says:

  uint8 activations / int8 weights (onnxruntime's default), the same with reduce_range
  (weights within +-64: what --int8 uses), int8 / int8, and int8 / int8 with symmetric
  activations.

For each: accuracy, agreement with the float file, the fused kernels against the reference
tensor by tensor (verify.compare_fused: the reference reads each kernel's quantized
inputs), and the reference on the whole graph.

    python bench/int8_schemes.py [--model lenet5-mnist] [--images 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from bench.figures import report  # noqa: E402

SCHEMES = {  # name -> (activation type, reduce_range, extra options of quantize_static)
    "uint8/int8": ("QUInt8", False, {}),
    "uint8/int8 reduce_range (--int8)": ("QUInt8", True, {}),
    "int8/int8": ("QInt8", False, {}),
    "int8/int8 symmetric activations": ("QInt8", False, {"ActivationSymmetric": True}),
}


def measure(proto, float_logits, images, labels, chunk: int = 500) -> dict:
    from export import reference
    from export.quantized import output_steps
    from export.verify import UNEXPOSED, FusedSessions, compare_fused

    sessions = FusedSessions.of(proto)
    step = output_steps(proto).get("logits", 0.0)
    worst, worst_tensor, unchanged, whole, whole_agree, logits = 0.0, "", True, 0.0, 0, []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        checks, plain = compare_fused(proto, {"input": x}, sessions)
        unchanged &= not any(c.tensor == UNEXPOSED for c in checks)
        for c in checks:
            if c.steps is not None and c.steps > worst:
                worst, worst_tensor = c.steps, c.tensor
        ref = reference.run(proto, {"input": x})["logits"]
        whole = max(whole, float(np.abs(ref - plain["logits"]).max()) / step)
        whole_agree += int((ref.argmax(1) == plain["logits"].argmax(1)).sum())
        logits.append(plain["logits"])
    logits = np.concatenate(logits)
    return {"accuracy": float((logits.argmax(1) == labels).mean()),
            "top1_agreement_with_float": float((logits.argmax(1) == float_logits.argmax(1)).mean()),
            "fused_vs_reference_max_steps": worst, "worst_tensor": worst_tensor,
            "exposing_kept_the_fused_graph": unchanged,
            "whole_graph_max_steps": round(whole, 2), "whole_graph_top1_agreement": whole_agree / len(images)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet5-mnist", help="a shipped model (default: lenet5-mnist)")
    parser.add_argument("--images", type=int, default=2000, help="test images to run (default: 2000)")
    parser.add_argument("--json", help="also write the figures to this file (default: stdout only)")
    args = parser.parse_args()
    import onnxruntime as ort

    from bench.int8_speed import cpu
    from export.exporter import export_model
    from export.int8 import Int8Options, quantize, training_calibration
    from export.options import INT8_MIN_OPSET
    from zoo.data import load, normalize
    from zoo.weights import split_stem

    model, dataset = split_stem(args.model)
    float_proto, _, _ = export_model(model, dataset)
    calibration = training_calibration(dataset, Int8Options())
    split = load(dataset, "test", progress=False)
    images, labels = normalize(split.images[: args.images], split.info), split.labels[: args.images]
    float_logits = ort.InferenceSession(float_proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"input": images})[0]
    info = cpu()
    print(f"{args.model}, {len(images):,} test images, calibrated on {calibration.description}; CPU {info['model']}, "
          f"VNNI: {', '.join(f for f, on in info['flags'].items() if on and 'vnni' in f) or 'none'}")
    print(f"float accuracy {100 * (float_logits.argmax(1) == labels).mean():.2f}%")
    rows = {}
    for name, (activation, reduce_range, extra) in SCHEMES.items():
        proto = quantize(float_proto, calibration, INT8_MIN_OPSET, activation_type=activation,
                         reduce_range=reduce_range, extra_options=extra)
        rows[name] = row = measure(proto, float_logits, images, labels)
        note = "" if row["exposing_kept_the_fused_graph"] else " (exposing its tensors changed the fused graph)"
        print(f"{name:<34} accuracy {100 * row['accuracy']:.2f}%, agreement with float "
              f"{100 * row['top1_agreement_with_float']:.2f}%; fused kernels vs reference: at most "
              f"{row['fused_vs_reference_max_steps']:g} steps ({row['worst_tensor'] or '-'}){note}; whole graph: "
              f"{row['whole_graph_max_steps']:g} steps, top-1 agreement {100 * row['whole_graph_top1_agreement']:.2f}%",
              flush=True)
    figures = {"model": args.model, "images": len(images), "cpu": info, "schemes": rows}
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
