"""Check any ONNX file, ours or another exporter's, with the same three eyes as an export:

1. structure: onnx.checker (full_check, else the basic check, saying so) and shape inference
   (strict, else lenient, saying so);
2. nodes: every node's output in onnxruntime (no graph optimization, every intermediate
   exposed) against the NumPy reference, on seeded inputs built from the declared input
   shapes and types (a symbolic dimension becomes SYMBOLIC_DIM);
3. goldens: every test_data_set_*/ beside the file (the ONNX Model Zoo's layout,
   model.onnx next to test_data_set_0/, and ours, models/<name>.onnx with
   models/<name>/test_data_set_0/) through onnxruntime and the reference.

An operator the reference lacks is named as unchecked, never approximated, and so is every
node that depends on its output; `strict` makes that a failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from . import reference
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


@dataclass
class GoldenCheck:
    path: str
    output: str
    runtime: str  # onnxruntime or reference
    ok: bool | None  # None: the reference could not run this graph
    max_abs: float | None = None
    reason: str = ""


@dataclass
class VerifyResult:
    path: str
    strict: bool
    structure: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    nodes: list[NodeCheck] = field(default_factory=list)
    goldens: list[GoldenCheck] = field(default_factory=list)
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


def reference_values(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Every value the reference can compute, and for each one it cannot (status, reason):
    ("unchecked", what the reference lacks) or ("downstream", the unchecked node it depends on)."""
    values: dict[str, np.ndarray | None] = {"": None}
    values.update({i.name: numpy_helper.to_array(i) for i in proto.graph.initializer})
    values.update(feeds)
    missing: dict[str, tuple[str, str]] = {}
    origin: dict[str, str] = {}  # output name -> the unchecked node it comes from
    for node in proto.graph.node:
        blocked = [origin[name] for name in node.input if name in origin]
        if blocked:
            for name in filter(None, node.output):
                origin[name] = blocked[0]
                missing[name] = ("downstream", f"downstream of {blocked[0]}")
            continue
        try:
            outputs = reference.run_node(node, [values[name] for name in node.input])
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
    ref_values, missing = reference_values(proto, feeds)
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
            checks.append(NodeCheck(node.name, node.op_type, name, "ok" if ok else "differs", max_abs, max_rel,
                                    module=module, shape=list(np.shape(want))))
    return checks


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


def check_goldens(proto: onnx.ModelProto, folder: Path) -> list[GoldenCheck]:
    feeds = golden_feeds(proto, folder)
    expected = read_tensors(folder, "output")
    out_names = [o.name for o in proto.graph.output]
    got = {"onnxruntime": dict(zip(out_names, session(proto).run(out_names, feeds)))}
    try:
        got["reference"] = reference.run(proto, feeds)
        ref_reason = ""
    except (reference.UnsupportedError, ValueError) as e:
        ref_reason = f"the reference cannot run this graph: {first_line(e)}"
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
            ok = bool(np.all(diff <= GOLDEN_ATOL + GOLDEN_RTOL * np.abs(want.astype(np.float64))))
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
                        f"(max |diff| {n.max_abs:.3g}, max rel {n.max_rel:.3g})"
                        for n in result.nodes if n.status == "differs"]
    for folder in test_data_dirs(path):
        try:
            checks = check_goldens(proto, folder)
        except ORT_ERRORS as e:
            result.failures.append(f"golden: {folder}: onnxruntime cannot run its inputs: {first_line(e)}")
            continue
        result.goldens += checks
        result.failures += [f"golden: {g.path} ({g.output}) vs {g.runtime}: "
                            + (g.reason or f"max |diff| {g.max_abs:.3g} > {GOLDEN_ATOL} + {GOLDEN_RTOL} * |golden|")
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
    lines += [f"  FAILED      {f}" for f in result.failures]
    lines.append("  passed" if result.passed else "  verify FAILED")
    return "\n".join(lines)
