"""The checks every exported model must pass before it is written.

1. structure: onnx.checker (full_check) and strict shape inference; output [batch, classes];
2. batch axis: symbolic, and onnxruntime agrees with PyTorch at batch 1, 7 and 64;
3. nodes: every intermediate tensor of onnxruntime against the NumPy reference;
4. test set: PyTorch eager, onnxruntime and the reference agree on all 10,000 images
   (for a custom model: on the user's samples, or on seeded random inputs), streamed in
   chunks so that memory stays flat whatever the number of images.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from . import reference
from .metadata import INPUT_NAME, OUTPUT_NAME
from .runtime import NODE_ATOL, NODE_RTOL, session
from .verify import NodeCheck, compare_nodes

LOGIT_ATOL = 1e-4  # max |logit difference| allowed between any two implementations
BATCH_SIZES = (1, 7, 64)
ACCURACY_SLACK = 2e-4  # two images of 10,000: eval batching may flip a near-tie
CHUNK = 500  # images per step of the test-set check: peak memory is set by this, not by N


class CheckFailed(Exception):
    """A check did not pass; the message names the check and the node or figure."""


def check_strict_structure(proto: onnx.ModelProto, num_classes: int) -> dict:
    """onnx.checker's full check and strict shape inference must pass, and the output be
    [batch, num_classes]. (verify, for any file, reports the strictest that pass:
    export.verify.structure_report.)"""
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise CheckFailed(f"structure: {e}") from None
    out = inferred.graph.output[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in out]
    if len(shape) != 2 or shape[1] != num_classes:
        raise CheckFailed(f"structure: output {OUTPUT_NAME} has inferred shape {shape}, "
                          f"expected [batch, {num_classes}]")
    return {"checker": "full_check passed", "inferred_output_shape": shape,
            "opset": proto.opset_import[0].version, "nodes": len(proto.graph.node)}


@torch.inference_mode()
def torch_logits(net: nn.Module, x: np.ndarray) -> np.ndarray:
    return net.eval()(torch.from_numpy(x)).numpy()


def check_batch_axis(proto: onnx.ModelProto, sess: ort.InferenceSession, net: nn.Module,
                     images: np.ndarray) -> dict:
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim0.dim_param:
        raise CheckFailed(f"batch axis: input dimension 0 is fixed at {dim0.dim_value}, not symbolic")
    errors = {}
    for n in sorted({min(n, len(images)) for n in BATCH_SIZES}):
        x = images[:n]
        (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x})
        want = torch_logits(net, x)
        if got.shape != want.shape:
            raise CheckFailed(f"batch axis: batch {n} gave shape {got.shape}, PyTorch {want.shape}")
        errors[n] = float(np.abs(got - want).max())
        if errors[n] > LOGIT_ATOL:
            raise CheckFailed(f"batch axis: batch {n} differs from PyTorch by {errors[n]:.3g} > {LOGIT_ATOL}")
    return {"dim_param": dim0.dim_param, "max_abs_vs_torch": errors}


def run_reference(proto: onnx.ModelProto, images: np.ndarray) -> dict:
    try:
        return reference.run(proto, {INPUT_NAME: images})
    except (reference.UnsupportedError, ValueError) as e:
        raise CheckFailed(f"reference: {e}") from None


def check_nodes_match(proto: onnx.ModelProto, images: np.ndarray) -> list[NodeCheck]:
    """verify's node comparison on `images`, every node required to match: an operator the
    reference lacks fails the export as much as a node that differs."""
    results = compare_nodes(proto, {INPUT_NAME: images})
    unchecked = next((r for r in results if r.status == "unchecked"), None)
    if unchecked:
        raise CheckFailed(f"reference: {unchecked.reason}")
    failed = [r for r in results if r.status != "ok"]
    if failed:
        r = failed[0]
        raise CheckFailed(
            f"nodes: {r.op_type} node {r.node!r} ({r.module}) output {r.output!r} differs from the NumPy "
            f"reference (max |diff| {r.max_abs:.3g}, max rel {r.max_rel:.3g}; allowed "
            f"{NODE_ATOL} + {NODE_RTOL} * |ref|)"
        )
    return results


class _PairwiseTally:
    """Top-1 agreement, max |logit difference| and accuracy, accumulated chunk by chunk."""

    PAIRS = (("torch", "onnxruntime"), ("onnxruntime", "reference"), ("torch", "reference"))

    def __init__(self) -> None:
        self.images = 0
        self.disagree = {f"{a}-{b}": 0 for a, b in self.PAIRS}
        self.max_abs = {f"{a}-{b}": 0.0 for a, b in self.PAIRS}
        self.correct = {"torch": 0, "onnxruntime": 0, "reference": 0}

    def add(self, outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> None:
        self.images += len(next(iter(outputs.values())))
        top1 = {k: v.argmax(1) for k, v in outputs.items()}
        for a, b in self.PAIRS:
            self.disagree[f"{a}-{b}"] += int((top1[a] != top1[b]).sum())
            self.max_abs[f"{a}-{b}"] = max(self.max_abs[f"{a}-{b}"], float(np.abs(outputs[a] - outputs[b]).max()))
        if labels is not None:
            for k, v in top1.items():
                self.correct[k] += int((v == labels).sum())


def check_test_set(proto: onnx.ModelProto, sess: ort.InferenceSession, net: nn.Module, images: np.ndarray,
                   labels: np.ndarray | None, card_accuracy: float | None, chunk: int = CHUNK) -> dict:
    """PyTorch eager, onnxruntime (optimized) and the reference on every image, `chunk` at a
    time. Without labels there is no accuracy; without a card accuracy, no accuracy floor."""
    tally = _PairwiseTally()
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        tally.add({"torch": torch_logits(net, x),
                   "onnxruntime": sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0],
                   "reference": run_reference(proto, x)[OUTPUT_NAME]},
                  None if labels is None else labels[start : start + chunk])
    n = tally.images
    agreement = {pair: 1 - wrong / n for pair, wrong in tally.disagree.items()}
    result = {"images": n, "chunk": chunk, "top1_agreement": agreement, "max_abs_logit_diff": tally.max_abs}
    if labels is not None:
        result["accuracy"] = {k: c / n for k, c in tally.correct.items()}
    for pair, wrong in tally.disagree.items():
        if wrong:
            raise CheckFailed(f"test set: {pair} disagree on the top-1 class of {wrong} images")
        if tally.max_abs[pair] > LOGIT_ATOL:
            raise CheckFailed(f"test set: {pair} logits differ by {tally.max_abs[pair]:.3g} > {LOGIT_ATOL}")
    if card_accuracy is not None and abs(result["accuracy"]["onnxruntime"] - card_accuracy) > ACCURACY_SLACK:
        raise CheckFailed(f"test set: accuracy {result['accuracy']['onnxruntime']:.4f} is not the model card's "
                          f"{card_accuracy:.4f}")
    return result


def node_summary(results: list[NodeCheck]) -> list[dict]:
    return [{**asdict(r), "ok": r.status == "ok"} for r in results]
