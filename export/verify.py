"""Check any ONNX file, ours or another exporter's, with the same three eyes as an export:

1. structure: onnx.checker (full_check, else the basic check, saying so) and shape inference
   (strict, else lenient, saying so);
2. nodes: every node's output in onnxruntime (no graph optimization, every intermediate
   exposed) against the NumPy reference, on seeded inputs built from the declared input
   shapes and types (a symbolic dimension becomes SYMBOLIC_DIM);
3. goldens: every test_data_set_*/ beside the file (the ONNX Model Zoo's layout,
   model.onnx next to test_data_set_0/, and ours, models/<name>.onnx with
   models/<name>/test_data_set_0/) through onnxruntime and the reference;
4. for a quantized (int8) file, fused: onnxruntime as users run it, its graph optimized
   into fused integer kernels (QLinearConv and friends), against the reference on the
   seeded inputs: an 8-bit kernel that saturates on this CPU shows here.

In a quantized file, quantized tensors may differ from the reference by QUANT_STEPS
quantization step (export/quantized.py says why), the reference reading each node's
quantized inputs from onnxruntime's run (for the goldens and the fused check, from the
optimized run): an output that a DequantizeLinear computes may differ by that many of its
steps, on top of the float tolerance.

An operator the reference lacks is named as unchecked, never approximated, and so is every
node that depends on its output; `strict` makes that a failure.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from . import reference
from .quantized import QUANT_STEPS, anchored, is_anchor, is_quantized, is_quantized_dtype, output_steps
from .runtime import compare, expose_intermediates, session, source_module
from .test_data import read_tensor

# what onnxruntime raises for a graph it cannot load or run: reported, never a traceback
ORT_ERRORS = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.NotImplemented,
              ort_errors.RuntimeException)
SYMBOLIC_DIM = 2  # what a symbolic or unknown dimension becomes in the generated inputs
SEED = 0
GOLDEN_RTOL, GOLDEN_ATOL = 1e-3, 1e-4  # goldens come from another framework: the Model Zoo's rtol


@dataclass
class NodeCheck:
    node: str
    op_type: str
    output: str
    status: str  # "ok", "differs", "unchecked" (reference lacks it) or "downstream" (of one that is)
    max_abs: float | None = None
    max_rel: float | None = None  # max of |ort - ref| / max(|ref|, atol) over the elements
    reason: str = ""
    module: str = ""  # the PyTorch module it was exported from, where torch.onnx recorded it
    shape: list[int] | None = None  # of the reference's output
    steps: int | None = None  # a quantized output: its largest difference, in quantization steps


@dataclass
class GoldenCheck:
    path: str
    output: str
    runtime: str  # onnxruntime or reference
    ok: bool | None  # None: the reference could not run this graph
    max_abs: float | None = None
    reason: str = ""


@dataclass
class FusedCheck:
    """One tensor of the optimized (fused) onnxruntime session against the reference: a
    quantized tensor (in steps) or a graph output (float tolerance plus QUANT_STEPS of its
    step)."""
    tensor: str
    kind: str  # "quantized" or "output"
    ok: bool | None  # None: the reference could not compute it
    max_abs: float | None = None  # a quantized tensor: in steps
    allowed: float | None = None
    step: float | None = None  # an output a DequantizeLinear computes: its step
    reason: str = ""

    @property
    def steps(self) -> float | None:
        """The largest difference in quantization steps, where there are steps."""
        if self.kind == "quantized":
            return self.max_abs
        return self.max_abs / self.step if self.step and self.max_abs is not None else None


@dataclass
class VerifyResult:
    path: str
    strict: bool
    structure: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    nodes: list[NodeCheck] = field(default_factory=list)
    goldens: list[GoldenCheck] = field(default_factory=list)
    fused: list[FusedCheck] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def unchecked(self) -> list[NodeCheck]:
        return [n for n in self.nodes if n.status in ("unchecked", "downstream")]

    @property
    def passed(self) -> bool:
        return not self.failures and not (self.strict and self.unchecked)

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed, "unchecked_ops": unchecked_ops(self)}


def unchecked_ops(result: VerifyResult) -> list[str]:
    return sorted({n.op_type for n in result.nodes if n.status == "unchecked"})


def structure_report(proto: onnx.ModelProto) -> dict:
    """The strictest structure checks that pass, and what was given up; raises for a file
    that fails even the lenient ones. (An export requires the strictest to pass:
    export.checks.check_strict_structure.)"""
    notes = []
    try:
        onnx.checker.check_model(proto, full_check=True)
        checker = "full_check passed"
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        onnx.checker.check_model(proto)  # a file that fails this is not a model at all
        checker = "basic check passed"
        notes.append(f"full_check failed: {first_line(e)}")
    try:
        onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        inference = "strict shape inference passed"
    except onnx.shape_inference.InferenceError as e:
        onnx.shape_inference.infer_shapes(proto)
        inference = "lenient shape inference only"
        notes.append(f"strict shape inference failed: {first_line(e)}")
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    return {"checker": checker, "shape_inference": inference, "notes": notes, "opsets": opsets,
            "nodes": len(proto.graph.node), "producer": f"{proto.producer_name} {proto.producer_version}".strip()}


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def generated_inputs(proto: onnx.ModelProto, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded inputs of the declared shapes and types: floats from N(0, 1), integers in 0..9."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in graph_inputs(proto):
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise ValueError(f"input {value.name!r} is not a tensor; verify only builds tensor inputs")
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else SYMBOLIC_DIM
                 for d in tensor.shape.dim]
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[value.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feeds[value.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def reference_values(proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
                     anchors: dict[str, np.ndarray] | None = None) -> tuple[dict, dict]:
    """Every value the reference can compute, and for each one it cannot (status, reason):
    ("unchecked", what the reference lacks) or ("downstream", the unchecked node it depends on).
    A quantized input found in `anchors` (onnxruntime's values) is read from there, so a node
    after an unchecked one is still checked when what it reads is quantized."""
    values: dict[str, np.ndarray | None] = {"": None}
    values.update({i.name: numpy_helper.to_array(i) for i in proto.graph.initializer})
    values.update(feeds)
    missing: dict[str, tuple[str, str]] = {}
    origin: dict[str, str] = {}  # output name -> the unchecked node it comes from
    for node in proto.graph.node:
        blocked = [origin[name] for name in node.input if name in origin and not is_anchor(name, anchors)]
        if blocked:
            for name in filter(None, node.output):
                origin[name] = blocked[0]
                missing[name] = ("downstream", f"downstream of {blocked[0]}")
            continue
        try:
            outputs = reference.run_node(node, [anchored(name, values, anchors) for name in node.input])
        except (reference.UnsupportedError, ValueError) as e:  # ValueError: an attribute value it lacks
            for name in filter(None, node.output):
                origin[name] = f"{node.op_type} node {node.name!r}"
                missing[name] = ("unchecked", first_line(e))
            continue
        values.update({name: value for name, value in zip(node.output, outputs) if name})
    return values, missing


def compare_nodes(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], strict_inference: bool = True
                  ) -> list[NodeCheck]:
    """Every node's output in onnxruntime (no graph optimization, every intermediate
    exposed) against the NumPy reference, for `feeds`: the node check of verify and, on real
    images, of every export (export.checks.check_nodes_match, which requires all "ok")."""
    model = expose_intermediates(proto, strict=strict_inference)
    names = [o.name for o in model.graph.output]
    ort_values = dict(zip(names, session(model, optimize=False).run(names, feeds)))
    ref_values, missing = reference_values(proto, feeds, anchors=ort_values)
    checks = []
    for node in proto.graph.node:
        for name in filter(None, node.output):
            module = source_module(node)
            if name in missing:
                status, reason = missing[name]
                checks.append(NodeCheck(node.name, node.op_type, name, status, reason=reason, module=module))
                continue
            want = ref_values[name]
            max_abs, max_rel, ok = compare(ort_values[name], want)
            status = "ok" if ok else "differs"
            if is_quantized_dtype(want.dtype):  # compare() counted quantization steps
                checks.append(NodeCheck(node.name, node.op_type, name, status, steps=int(max_abs), module=module,
                                        shape=list(np.shape(want))))
            else:
                checks.append(NodeCheck(node.name, node.op_type, name, status, max_abs, max_rel, module=module,
                                        shape=list(np.shape(want))))
    return checks


def output_tolerance(want: np.ndarray, step: float) -> np.ndarray:
    """Per element: the float tolerance of goldens, plus QUANT_STEPS of the output's
    quantization step (0 for an output no DequantizeLinear computes)."""
    return GOLDEN_ATOL + GOLDEN_RTOL * np.abs(want.astype(np.float64)) + QUANT_STEPS * step


def quantization_range_inputs(proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
                              seed: int = SEED) -> dict[str, np.ndarray]:
    """`feeds`, but each float input that a QuantizeLinear reads with a constant per-tensor
    scale and zero point spread over that quantization's whole range, half of the values
    at its two ends (as an image's background and strokes): what drives 8-bit kernels to
    the sums that saturate, which inputs around 0 seldom do."""
    rng = np.random.default_rng(seed)
    constants = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    spread = dict(feeds)
    for node in proto.graph.node:
        name = node.input[0]
        if (node.op_type != "QuantizeLinear" or name not in feeds or len(node.input) < 3
                or node.input[1] not in constants or node.input[2] not in constants):
            continue
        scale, zero = constants[node.input[1]], constants[node.input[2]]
        if scale.size != 1 or not is_quantized_dtype(zero.dtype):
            continue
        info = np.iinfo(zero.dtype)
        low, high = (float(info.min) - float(zero)) * float(scale), (float(info.max) - float(zero)) * float(scale)
        shape = feeds[name].shape
        ends = np.where(rng.random(shape) < 0.5, low, high)
        spread[name] = np.where(rng.random(shape) < 0.5, ends, rng.uniform(low, high, shape)).astype(feeds[name].dtype)
    return spread


UNEXPOSED = "(quantized tensors)"  # the note compare_fused adds when it could compare the outputs only


def writes_quantized(node: onnx.NodeProto) -> bool:
    """QuantizeLinear, DynamicQuantizeLinear and the QLinear* operators (onnxruntime's
    com.microsoft ones too) write a quantized tensor as their first output."""
    return node.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") or node.op_type.startswith("QLinear")


@dataclass
class FusedSessions:
    """onnxruntime with every graph optimization, as users run it, and the same with every
    quantized tensor exposed: the fused kernels write those tensors, so exposing them
    leaves the kernels as they are (run() returns whether the outputs stayed identical)."""
    plain: ort.InferenceSession
    exposed: ort.InferenceSession
    outputs: list[str]
    quantized: list[str]

    @classmethod
    def of(cls, proto: onnx.ModelProto) -> FusedSessions:
        outputs = [o.name for o in proto.graph.output]
        quantized = [n.output[0] for n in proto.graph.node if writes_quantized(n) and n.output[0] not in outputs]
        exposed = copy.deepcopy(proto)
        exposed.graph.output.extend(onnx.ValueInfoProto(name=name) for name in quantized)
        return cls(session(proto), session(exposed), outputs, quantized)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], bool]:
        """(the plain session's outputs, every exposed tensor, whether the outputs agree)."""
        plain = dict(zip(self.outputs, self.plain.run(self.outputs, feeds)))
        names = self.outputs + self.quantized
        exposed = dict(zip(names, self.exposed.run(names, feeds)))
        return plain, exposed, all(np.array_equal(plain[n], exposed[n]) for n in self.outputs)


def compare_fused(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], sessions: FusedSessions
                  ) -> tuple[list[FusedCheck], dict[str, np.ndarray]]:
    """Every quantized tensor and output of the fused run against the reference, which
    reads each node's quantized inputs from that run; if exposing the quantized tensors
    changed the outputs, only the outputs, against the whole-graph reference. Returns the
    checks and the plain session's outputs."""
    plain, exposed, unchanged = sessions.run(feeds)
    anchors = exposed if unchanged else None
    values, missing = reference_values(proto, feeds, anchors=anchors)
    steps = output_steps(proto)
    results = []
    for name in (sessions.quantized if unchanged else []) + sessions.outputs:
        kind = "output" if name in plain else "quantized"
        if name in missing:
            results.append(FusedCheck(name, kind, None, reason=missing[name][1]))
            continue
        got, want = (plain if kind == "output" else exposed)[name], values[name]
        if got.shape != want.shape:
            results.append(FusedCheck(name, kind, False, reason=f"shape {list(got.shape)}, reference {list(want.shape)}"))
        elif is_quantized_dtype(want.dtype):
            max_abs, _, ok = compare(got, want)
            results.append(FusedCheck(name, "quantized", ok, max_abs, float(QUANT_STEPS)))
        else:
            diff = np.abs(got.astype(np.float64) - want)
            allowed = output_tolerance(want, steps.get(name, 0.0))
            results.append(FusedCheck(name, kind, bool(np.all(diff <= allowed)), float(diff.max(initial=0)),
                                      float(allowed.max(initial=0)), steps.get(name)))
    if not unchanged:
        results.append(FusedCheck(UNEXPOSED, "quantized", None, reason=(
            "exposing them changed onnxruntime's outputs, so its fused graph; outputs compared with the whole-graph "
            "reference instead")))
    return results, plain


def check_fused(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[FusedCheck]:
    """A quantized file as users run it, on `feeds` spread over the input quantization's
    range."""
    return compare_fused(proto, quantization_range_inputs(proto, feeds), FusedSessions.of(proto))[0]


def test_data_dirs(path: Path) -> list[Path]:
    """test_data_set_*/ beside the file (Model Zoo) and in <stem>/ beside it (ours)."""
    found = sorted(path.parent.glob("test_data_set_*")) + sorted(path.with_suffix("").glob("test_data_set_*"))
    return [d for d in found if d.is_dir()]


def read_tensors(folder: Path, prefix: str) -> list[tuple[str, np.ndarray]]:
    files = sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    tensors = []
    for file in files:
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        tensors.append((tensor.name, read_tensor(file)))
    return tensors


def golden_feeds(proto: onnx.ModelProto, folder: Path) -> dict[str, np.ndarray]:
    """input_<i>.pb by tensor name when the names are the graph's, else by position."""
    declared = [i.name for i in graph_inputs(proto)]
    tensors = read_tensors(folder, "input")
    if len(tensors) != len(declared):
        raise ValueError(f"{folder}: {len(tensors)} input_*.pb files for {len(declared)} graph inputs {declared}")
    if {n for n, _ in tensors} == set(declared):
        return dict(tensors)
    return {name: array for name, (_, array) in zip(declared, tensors)}


def golden_reference(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], out_names: list[str]) -> dict:
    """The reference's outputs for golden inputs: of the whole graph for a float file; for
    a quantized one, node by node reading the quantized tensors of onnxruntime's fused run
    (one-step differences would otherwise add up from layer to layer)."""
    if not is_quantized(proto):
        return reference.run(proto, feeds)
    _, exposed, unchanged = FusedSessions.of(proto).run(feeds)
    values, missing = reference_values(proto, feeds, anchors=exposed if unchanged else None)
    blocked = [name for name in out_names if name in missing]
    if blocked:
        raise reference.UnsupportedError(missing[blocked[0]][1])
    return {name: values[name] for name in out_names}


def check_goldens(proto: onnx.ModelProto, folder: Path) -> list[GoldenCheck]:
    feeds = golden_feeds(proto, folder)
    expected = read_tensors(folder, "output")
    out_names = [o.name for o in proto.graph.output]
    got = {"onnxruntime": dict(zip(out_names, session(proto).run(out_names, feeds)))}
    try:
        got["reference"] = golden_reference(proto, feeds, out_names)
        ref_reason = ""
    except (reference.UnsupportedError, ValueError) as e:
        ref_reason = f"the reference cannot run this graph: {first_line(e)}"
    steps = output_steps(proto)
    results = []
    for i, (tensor_name, want) in enumerate(expected):
        name = tensor_name if tensor_name in out_names else out_names[i]
        where = str(folder / f"output_{i}.pb")
        for runtime in ("onnxruntime", "reference"):
            if runtime not in got:
                results.append(GoldenCheck(where, name, runtime, None, reason=ref_reason))
                continue
            value = got[runtime][name]
            if value.shape != want.shape:
                results.append(GoldenCheck(where, name, runtime, False,
                                           reason=f"shape {list(value.shape)}, golden {list(want.shape)}"))
                continue
            diff = np.abs(value.astype(np.float64) - want)
            ok = bool(np.all(diff <= output_tolerance(want, steps.get(name, 0.0))))
            results.append(GoldenCheck(where, name, runtime, ok, float(diff.max(initial=0))))
    return results


def verify(path: str | Path, strict: bool = False) -> VerifyResult:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an ONNX file (python -m export verify takes folders: it "
                         "verifies every .onnx in them)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(path)
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise ValueError(f"{path}: not a readable ONNX file ({first_line(e)})") from None
    result = VerifyResult(str(path), strict)
    try:
        result.structure = structure_report(proto)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        result.failures.append(f"structure: {first_line(e)}")
        return result
    feeds = generated_inputs(proto)
    result.inputs = {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in feeds.items()}
    try:
        result.nodes = compare_nodes(proto, feeds, result.structure["shape_inference"].startswith("strict"))
    except ORT_ERRORS as e:
        result.failures.append(f"onnxruntime cannot run this file: {first_line(e)}")
        return result
    result.failures += [f"nodes: {n.op_type} node {n.node!r} output {n.output!r} differs from the NumPy reference "
                        + (f"by {n.steps} quantization steps (allowed {QUANT_STEPS})" if n.steps is not None
                           else f"(max |diff| {n.max_abs:.3g}, max rel {n.max_rel:.3g})")
                        for n in result.nodes if n.status == "differs"]
    if is_quantized(proto):
        try:
            result.fused = check_fused(proto, feeds)
        except ORT_ERRORS as e:
            result.failures.append(f"fused: onnxruntime cannot run this file optimized: {first_line(e)}")
        result.failures += [f"fused: {f.kind} {f.tensor!r} of onnxruntime's optimized (fused int8) run differs from "
                            f"the reference: " + (f.reason or fused_difference(f)) for f in result.fused if f.ok is False]
    steps = output_steps(proto)
    for folder in test_data_dirs(path):
        try:
            checks = check_goldens(proto, folder)
        except ORT_ERRORS as e:
            result.failures.append(f"golden: {folder}: onnxruntime cannot run its inputs: {first_line(e)}")
            continue
        result.goldens += checks
        result.failures += [f"golden: {g.path} ({g.output}) vs {g.runtime}: "
                            + (g.reason or f"max |diff| {g.max_abs:.3g} > {GOLDEN_ATOL} + {GOLDEN_RTOL} * |golden|"
                               + (f" + {QUANT_STEPS} quantization step" if g.output in steps else ""))
                            for g in checks if g.ok is False]
    if strict and result.unchecked:
        result.failures.append(f"--strict: {len(result.unchecked)} node outputs unchecked "
                               f"(the reference lacks {', '.join(unchecked_ops(result))})")
    return result


def format_verify(result: VerifyResult) -> str:
    s = result.structure
    lines = [result.path]
    if s:
        lines.append(f"  structure   onnx.checker {s['checker']}; {s['shape_inference']}; {s['nodes']} nodes; "
                     f"opsets {', '.join(f'{d} {v}' for d, v in s['opsets'].items())}")
        lines += [f"              note: {n}" for n in s["notes"]]
    if result.inputs:
        shapes = ", ".join(f"{k} {v['shape']} {v['dtype']}" for k, v in result.inputs.items())
        lines.append(f"  inputs      seeded, from the declared shapes: {shapes}")
    if result.nodes:
        checked = [n for n in result.nodes if n.max_abs is not None]
        ok = sum(n.status == "ok" for n in result.nodes)
        worst = max(checked, key=lambda n: n.max_abs, default=None)
        tail = f"; worst: {worst.op_type} {worst.node!r} max |diff| {worst.max_abs:.1e}" if worst else ""
        quantized = [n for n in result.nodes if n.steps is not None]
        if quantized:
            off = sum(n.steps > 0 for n in quantized)
            tail += (f"; {len(quantized)} quantized, within {QUANT_STEPS} step of the reference read on "
                     f"onnxruntime's inputs ({off} with a 1-step difference)")
        lines.append(f"  nodes       {ok}/{len(result.nodes)} node outputs match the NumPy reference{tail}")
        if result.unchecked:
            down = sum(n.status == "downstream" for n in result.nodes)
            lines.append(f"  unchecked   {', '.join(unchecked_ops(result))}: the reference lacks "
                         f"{'it' if len(unchecked_ops(result)) == 1 else 'them'}; {down} node outputs "
                         f"downstream of them cannot be checked either")
    golden_dirs = sorted({str(Path(g.path).parent) for g in result.goldens})
    if golden_dirs:
        ok = sum(g.ok is True for g in result.goldens)
        lines.append(f"  goldens     {len(golden_dirs)} test_data_set: {ok}/{len(result.goldens)} output checks "
                     f"pass (onnxruntime and the reference)")
    else:
        lines.append("  goldens     none beside the file (no test_data_set_*)")
    if result.fused:
        lines.append(fused_line(result.fused))
    lines += [f"  FAILED      {f}" for f in result.failures]
    lines.append("  passed" if result.passed else "  verify FAILED")
    return "\n".join(lines)


def fused_difference(check: FusedCheck) -> str:
    if check.kind == "quantized":
        return f"{check.max_abs:.0f} quantization steps (allowed {QUANT_STEPS})"
    steps = f" ({check.steps:.1f} quantization steps of {check.step:.3g})" if check.step else ""
    return f"max |diff| {check.max_abs:.3g} > {check.allowed:.3g}{steps}"


def fused_line(checks: list[FusedCheck]) -> str:
    checked = [c for c in checks if c.ok is not None]
    quantized = [c for c in checked if c.kind == "quantized"]
    outputs = [c for c in checked if c.kind == "output"]
    if not checked:
        return f"  fused       not checked: {checks[0].reason}"
    worst = max((c.steps for c in checked if c.steps is not None), default=None)
    most = f"; at most {worst:.0f} quantization steps (allowed {QUANT_STEPS})" if worst is not None else ""
    line = (f"  fused       onnxruntime optimized (fused int8 kernels), inputs spread over the input quantization's "
            f"range: {sum(c.ok for c in quantized)}/{len(quantized)} quantized tensors and "
            f"{sum(c.ok for c in outputs)}/{len(outputs)} outputs match the reference{most}")
    skipped = [c for c in checks if c.ok is None]
    return line + "".join(f"\n              note: {c.tensor}: {c.reason}" for c in skipped[:1])
