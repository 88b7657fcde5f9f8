"""The checks catch what they are there to catch, and a failed export writes no model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from export import checks, reference
from export.exporter import to_onnx
from export.pipeline import export_and_check
from export.reference import UnsupportedError, run, run_node
from zoo import get_model


def test_fixed_batch_export_is_caught():
    net = get_model("lenet5").eval()
    proto = to_onnx(net)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # silently specialized
    with pytest.raises(checks.CheckFailed, match="batch axis: input dimension 0 is fixed at 2"):
        checks.check_batch_axis(proto, checks.session(proto), net, np.zeros((64, 1, 28, 28), np.float32))


def test_a_wrong_reference_op_is_named(monkeypatch):
    net = get_model("lenet5").eval()
    proto = to_onnx(net)
    monkeypatch.setitem(reference.OPS, "Relu", lambda X: X)  # a deliberately wrong Relu
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28), dtype=np.float32)
    with pytest.raises(checks.CheckFailed, match=r"nodes: Relu node '.*' \(relu.\) output '.*' differs"):
        checks.check_nodes_match(proto, x)


def test_failed_export_writes_report_but_no_model(monkeypatch, tmp_path, data_dir):
    monkeypatch.setitem(reference.OPS, "MaxPool", lambda X, **kw: reference.max_pool(X, **kw) + 1e-3)
    result = export_and_check("lenet5", "mnist", tmp_path, data_dir=data_dir)
    assert not result.passed
    assert "MaxPool node" in result.failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5-mnist.report.json"]
    report = json.loads((tmp_path / "lenet5-mnist.report.json").read_text())
    assert report["passed"] is False and "MaxPool" in report["failure"]


def test_cli_exit_code_names_the_failing_node(monkeypatch, tmp_path, data_dir, capsys):
    from export.__main__ import main

    monkeypatch.setitem(reference.OPS, "Gemm", lambda *a, **kw: reference.gemm(*a, **kw) * 1.01)
    assert main(["lenet5", "--out", str(tmp_path), "--data-dir", str(data_dir)]) == 1
    captured = capsys.readouterr()
    assert "FAILED      nodes: Gemm node" in captured.out
    assert "1 of 1 exports FAILED" in captured.err
    assert not (tmp_path / "lenet5-mnist.onnx").exists()


def graph_with(node: onnx.NodeProto) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph)


def test_unsupported_operator_is_named():
    model = graph_with(helper.make_node("Erf", ["x"], ["y"], name="erf0"))
    with pytest.raises(UnsupportedError, match="node 'erf0': operator Erf is not supported"):
        run(model, {"x": np.zeros((1, 1, 4, 4), np.float32)})


def test_unsupported_attribute_is_named():
    node = helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], storage_order=1)
    with pytest.raises(UnsupportedError, match="storage_order=1"):
        run_node(node, [np.zeros((1, 1, 4, 4), np.float32)])
    node = helper.make_node("Relu", ["x"], ["y"], name="r", alpha=0.1)
    with pytest.raises(UnsupportedError, match="Relu attribute\\(s\\) alpha not supported"):
        run_node(node, [np.zeros((1, 1, 4, 4), np.float32)])


def test_run_returns_intermediates_and_matches_torch():
    torch.manual_seed(0)
    net = get_model("resnet-mini").eval()
    proto = to_onnx(net)
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28), dtype=np.float32)
    values = run(proto, {"input": x}, intermediates=True)
    assert set(values) == {o for n in proto.graph.node for o in n.output if o}
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = run(proto, {"input": x})["logits"]
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
