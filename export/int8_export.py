"""--int8: after the float file passed its checks, quantize it (export/int8.py), run the int8
checks (export/int8_checks.py) and write <name>-int8.onnx beside it only if they all pass,
with test data whose outputs are the int8 file's own (onnxruntime's, as users run it)."""

from __future__ import annotations

import onnx

from typing import Callable

from .checks import CheckFailed, check_strict_structure, session
from .int8 import CalibrationSet, int8_name, int8_opset, quantize, scheme_json, set_int8_metadata
from .int8_checks import check_batch_axis, check_nodes, check_test_set
from .metadata import INPUT_NAME, OUTPUT_NAME
from .verify import FusedSessions
from .pipeline import NODE_CHECK_IMAGES, TEST_DATA_IMAGES, CheckInputs, ExportResult, WriteOptions, run_checks, \
    write_model, write_report


def export_int8(float_result: ExportResult, float_proto: onnx.ModelProto, inputs: CheckInputs,
                calibrate: Callable[[], CalibrationSet], options: WriteOptions, *, num_classes: int,
                opset: int) -> ExportResult:
    """The int8 file of a float export, calibrated on what `calibrate` returns (called only
    when the float file passed): its report is written either way, the model and its test
    data only when the float file and every int8 check passed."""
    name = int8_name(float_result.name)
    opset = int8_opset(opset)
    report = {"source": float_result.report["source"], "precision": "int8", "float_model": f"{float_result.name}.onnx",
              "model": float_result.report.get("model"), "opset": opset, "name": name,
              "scheme": scheme_json(), "checked_on": inputs.description, "checked_on_kind": inputs.kind}
    result = ExportResult(name, passed=False, report=report)
    if not float_result.passed:
        result.failure = report["failure"] = f"not quantized: the float file {float_result.name} failed its checks"
        report["passed"] = False
        result.written.append(write_report(name, report, options.out_dir))
        return result
    images = inputs.images
    calibration = calibrate()
    report["calibration"] = {"description": calibration.description, "images": len(calibration.images)}
    state = {}

    def quantized() -> dict:
        try:
            state["proto"] = proto = quantize(float_proto, calibration, opset)
        except Exception as e:  # onnxruntime's quantizer raises whatever its graph passes raise
            raise CheckFailed(f"quantization: onnxruntime's quantizer failed ({type(e).__name__}: {e})") from None
        state["sessions"] = FusedSessions.of(proto)
        ops = [node.op_type for node in proto.graph.node]
        return {"nodes": len(ops), "quantize_linear": ops.count("QuantizeLinear"),
                "dequantize_linear": ops.count("DequantizeLinear")}

    steps = [
        ("quantize", quantized),
        ("structure", lambda: check_strict_structure(state["proto"], num_classes)),
        ("batch_axis", lambda: check_batch_axis(state["proto"], state["sessions"], images)),
        ("nodes", lambda: check_nodes(state["proto"], images[:NODE_CHECK_IMAGES])),
        ("test_set", lambda: check_test_set(state["proto"], state["sessions"], session(float_proto), images,
                                            inputs.labels)),
    ]
    run_checks(result, steps)
    if result.passed:
        proto = state["proto"]
        set_int8_metadata(proto, float_proto, f"{float_result.name}.onnx", calibration, report["test_set"],
                          inputs.description)
        report["float_onnx_bytes"] = float_result.report.get("onnx_bytes")
        sample = images[:TEST_DATA_IMAGES]
        (expected,) = state["sessions"].plain.run([OUTPUT_NAME], {INPUT_NAME: sample})
        result.written += write_model(name, proto, sample, expected, options, report)
    result.written.append(write_report(name, report, options.out_dir))
    return result

