"""`python -m export verify` on ONNX files that did not come from us: built with onnx.helper
alone (fixed batch 1, no metadata, Model Zoo test data), tampered with, or using an
operator the NumPy reference lacks."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from export import reference
from export.__main__ import main
from export.verify import verify

RNG = np.random.default_rng(7)
UNSUPPORTED = "Erf"  # an operator small CNNs rarely produce, and the reference lacks


def small_cnn(extra_op: str | None = None) -> onnx.ModelProto:
    """(1, 1, 6, 6) -> Conv 3x3 -> Relu -> [extra_op] -> Flatten -> Gemm -> (1, 3)."""
    w = numpy_helper.from_array(RNG.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.standard_normal(2).astype(np.float32), "b")
    fc = numpy_helper.from_array(RNG.standard_normal((3, 32)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    last = "r"
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["r"], ["e"], name="odd"))
        last = "e"
    nodes += [helper.make_node("Flatten", [last], ["f"], name="flatten"),
              helper.make_node("Gemm", ["f", "fc"], ["y"], name="gemm", transB=1)]
    graph = helper.make_graph(nodes, "helper-cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, b, fc])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx.helper")


def write_model_zoo_layout(folder, proto) -> object:
    """folder/model.onnx beside folder/test_data_set_0/{input_0,output_0}.pb, the goldens
    computed by onnx's own ReferenceEvaluator (a third implementation)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(proto, path)
    x = RNG.standard_normal((1, 1, 6, 6)).astype(np.float32)
    (y,) = ReferenceEvaluator(proto).run(None, {"x": x})
    data = folder / "test_data_set_0"
    data.mkdir()
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(y, "y").SerializeToString())
    return path


def test_helper_file_with_fixed_batch_and_no_metadata_passes(tmp_path, capsys):
    proto = small_cnn()
    assert not proto.metadata_props and proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    path = write_model_zoo_layout(tmp_path / "cnn", proto)
    result = verify(path)
    assert result.passed, result.failures
    assert [n.status for n in result.nodes] == ["ok"] * 4
    assert {(g.runtime, g.ok) for g in result.goldens} == {("onnxruntime", True), ("reference", True)}
    assert result.inputs == {"x": {"shape": [1, 1, 6, 6], "dtype": "float32"}}
    assert main(["verify", str(path), "--strict", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "4/4 node outputs match the NumPy reference" in out
    assert "1 test_data_set: 2/2 output checks pass" in out
    assert json.loads((tmp_path / "r.json").read_text())[0]["passed"] is True


def test_a_changed_weight_with_goldens_kept_fails_naming_the_golden(tmp_path, capsys):
    path = write_model_zoo_layout(tmp_path / "cnn", small_cnn())
    tampered = onnx.load(path)
    w = next(i for i in tampered.graph.initializer if i.name == "w")
    values = numpy_helper.to_array(w).copy()
    values[0, 0, 1, 1] += 0.5
    w.CopyFrom(numpy_helper.from_array(values, "w"))
    onnx.save(tampered, path)
    result = verify(path)
    assert not result.passed
    assert [(g.runtime, g.ok) for g in result.goldens] == [("onnxruntime", False), ("reference", False)]
    assert main(["verify", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "FAILED      golden: " in out and "test_data_set_0/output_0.pb (y) vs onnxruntime" in out
    assert f"1 of 1 files FAILED verification: {path}" in err


def test_an_operator_the_reference_lacks_is_named_and_strict_fails(tmp_path, capsys):
    assert UNSUPPORTED not in reference.OPS
    path = tmp_path / "odd.onnx"
    onnx.save(small_cnn(extra_op=UNSUPPORTED), path)
    result = verify(path)
    assert result.passed  # unchecked is reported, not a failure, without --strict
    statuses = {n.node: n.status for n in result.nodes}
    assert statuses == {"conv": "ok", "relu": "ok", "odd": "unchecked", "flatten": "downstream",
                        "gemm": "downstream"}
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"unchecked   {UNSUPPORTED}: the reference lacks it; 2 node outputs downstream" in out
    assert "goldens     none beside the file" in out
    assert main(["verify", str(path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert f"--strict: 3 node outputs unchecked (the reference lacks {UNSUPPORTED})" in out


@pytest.mark.parametrize("content,message", [(b"not a model", "not a readable ONNX file"), (None, "no such ONNX file")])
def test_unreadable_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(path) in err[0]


def test_a_folder_is_every_onnx_file_in_it(tmp_path, capsys):
    """`verify DIR` verifies every .onnx below it (here a Triton-style <name>/1/model.onnx and
    a flat file), and a folder without any says it is a folder (it said "no such ONNX file")."""
    first = write_model_zoo_layout(tmp_path / "models" / "cnn" / "1", small_cnn())
    onnx.save(small_cnn("Sigmoid"), tmp_path / "models" / "flat.onnx")
    assert main(["verify", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n  passed\n") == 2 and str(first) in out and str(tmp_path / "models" / "flat.onnx") in out
    assert out.strip().splitlines()[-1] == "all 2 files passed verification"
    (tmp_path / "empty").mkdir()
    assert main(["verify", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'empty'} is a folder with no .onnx file in it; name ONNX files, or a "
                   "folder holding them"]
    with pytest.raises(ValueError, match="is a folder, not an ONNX file"):
        verify(tmp_path / "models")
