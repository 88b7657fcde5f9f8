"""The NumPy reference against onnxruntime, one operator at a time: each case is a one-node
model built with onnx.helper, run by onnxruntime and by `reference.run`, so the attribute
names and optional inputs are the spec's, as a file from any exporter would have them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from export import reference
from export.reference import UnsupportedError

OPSET = 18
rng = np.random.default_rng(0)


def one_node_model(op_type: str, inputs: dict[str, np.ndarray | None], n_outputs: int = 1,
                   out_dtype=None, **attrs) -> onnx.ModelProto:
    """A model whose graph is the one node `op_type`; an input given as None is left out
    (its name is ""), as the spec writes an omitted optional input. The outputs have
    `out_dtype`, by default the first input's."""
    names = [name if value is not None else "" for name, value in inputs.items()]
    outputs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outputs, name=f"{op_type.lower()}0", **attrs)
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in inputs.items() if value is not None]
    first = next(v for v in inputs.values() if v is not None)
    out_type = helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype or first.dtype))
    graph_outputs = [helper.make_tensor_value_info(y, out_type, None)
                     for y in outputs]
    graph = helper.make_graph([node], "one_node", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model


def both(op_type: str, inputs: dict[str, np.ndarray | None], out_dtype=None,
         **attrs) -> tuple[np.ndarray, np.ndarray]:
    """(reference output, onnxruntime output) of the one-node model."""
    model = one_node_model(op_type, inputs, out_dtype=out_dtype, **attrs)
    feeds = {name: value for name, value in inputs.items() if value is not None}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)[0]
    actual = reference.run(model, feeds)["y0"]
    return actual, expected


def check(op_type: str, inputs: dict[str, np.ndarray | None], rtol=1e-6, atol=1e-6, **attrs) -> None:
    actual, expected = both(op_type, inputs, **attrs)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def normal(*shape: int, scale: float = 3.0) -> np.ndarray:
    return np.asarray(scale * rng.standard_normal(shape), dtype=np.float32)


GROUPED_CONV = [
    # (C, M, group, H, W, kernel, strides, dilations, pads)
    (8, 8, 8, 9, 9, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # depthwise, as in MobileNet
    (8, 8, 8, 10, 9, (3, 3), (2, 2), (1, 1), (1, 0, 1, 1)),  # depthwise, stride 2, asymmetric pads
    (6, 12, 6, 8, 8, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),  # depthwise, channel multiplier 2
    (4, 4, 4, 11, 11, (3, 3), (1, 2), (2, 2), (2, 2, 2, 2)),  # depthwise, dilated
    (8, 6, 2, 9, 8, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # grouped, 2 groups
    (12, 8, 4, 7, 7, (3, 1), (2, 1), (1, 1), (1, 0, 1, 0)),  # grouped, 4 groups, non-square kernel
    (6, 6, 3, 6, 6, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),  # grouped pointwise (ShuffleNet)
]


@pytest.mark.parametrize("c,m,group,h,w,kernel,strides,dilations,pads", GROUPED_CONV)
@pytest.mark.parametrize("bias", [True, False])
def test_grouped_and_depthwise_conv(c, m, group, h, w, kernel, strides, dilations, pads, bias):
    inputs = {"X": normal(3, c, h, w), "W": normal(m, c // group, *kernel, scale=0.5),
              "B": normal(m) if bias else None}
    check("Conv", inputs, rtol=1e-5, atol=1e-5, group=group, kernel_shape=list(kernel), strides=list(strides),
          dilations=list(dilations), pads=list(pads))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_depthwise_conv_auto_pad(auto_pad):
    inputs = {"X": normal(2, 6, 10, 9), "W": normal(6, 1, 4, 3, scale=0.5)}
    check("Conv", inputs, rtol=1e-5, atol=1e-5, group=6, auto_pad=auto_pad, strides=[2, 2])


@pytest.mark.parametrize("low,high", [(0.0, 6.0), (-1.0, None), (None, 0.5), (None, None), (2.0, -2.0)])
def test_clip_float_bounds_are_optional_inputs(low, high):
    as_input = lambda v: None if v is None else np.array(v, np.float32)  # noqa: E731
    check("Clip", {"input": normal(2, 3, 4, 5), "min": as_input(low), "max": as_input(high)}, rtol=0, atol=0)


def test_clip_int64_and_one_element_bounds():
    x = rng.integers(-50, 50, (4, 7)).astype(np.int64)
    check("Clip", {"input": x, "min": np.array([-10], np.int64), "max": np.array(20, np.int64)}, rtol=0, atol=0)


@pytest.mark.parametrize("alpha", [None, 0.1, 0.0, 2.5])
def test_leaky_relu(alpha):
    attrs = {} if alpha is None else {"alpha": alpha}
    check("LeakyRelu", {"X": normal(2, 3, 4, 5)}, rtol=0, atol=0, **attrs)


@pytest.mark.parametrize("alpha,beta", [(None, None), (1 / 6, 0.5), (0.3, -0.1)])
def test_hard_sigmoid(alpha, beta):
    attrs = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
    check("HardSigmoid", {"X": normal(2, 3, 4, 5, scale=6.0)}, **attrs)


def test_hard_swish():
    x = np.concatenate([normal(2, 3, 4, 5, scale=6.0).ravel(), np.float32([-3, 3, 0, -3.0001, 3.0001])])
    check("HardSwish", {"X": x})


def test_sigmoid_including_large_magnitudes():
    x = np.concatenate([normal(1000), np.float32([-1000, -100, -88.8, 0, 88.8, 100, 1000])])
    check("Sigmoid", {"X": x})


BROADCASTS = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (5,)),  # a bias along the last axis
    ((2, 3, 4, 5), (3, 1, 1)),  # a per-channel scale (SiLU-style gates, squeeze-excite)
    ((2, 3, 1, 1), (2, 3, 4, 5)),
    ((1, 3, 1, 5), (2, 1, 4, 1)),  # both sides stretch
    ((), (2, 3)),  # a scalar
    ((2, 3), (1,)),
    ((4, 1), (0,)),  # an empty axis broadcasts against 1
]


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("a_shape,b_shape", BROADCASTS)
def test_binary_ops_broadcast_multidirectionally(op_type, a_shape, b_shape):
    b = normal(*b_shape)
    if op_type == "Div":
        b = np.where(np.abs(b) < 0.1, np.float32(0.5), b)  # no near-zero divisors
    check(op_type, {"A": normal(*a_shape), "B": b})


def test_integer_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0, 9, -9], np.int64)
    b = np.array([2, 2, -2, -2, 3, 4, 4], np.int64)
    check("Div", {"A": a, "B": b}, rtol=0, atol=0)


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div"])
def test_shapes_that_do_not_broadcast_name_both(op_type):
    model = one_node_model(op_type, {"A": normal(2, 3, 4), "B": normal(3, 1, 5)})
    with pytest.raises(ValueError, match=rf"{op_type}: shapes A \(2, 3, 4\) and B \(3, 1, 5\) do not broadcast"):
        reference.run(model, {"A": normal(2, 3, 4), "B": normal(3, 1, 5)})


def test_mixed_types_are_refused():
    with pytest.raises(ValueError, match=r"Add: A dtype float32 .*B dtype float64"):
        reference.add(normal(2, 3), np.zeros(3))


@pytest.mark.parametrize("axis,shapes", [
    (1, [(2, 3, 4, 4), (2, 5, 4, 4)]),  # torch.cat along channels
    (-3, [(2, 3, 4, 4), (2, 1, 4, 4), (2, 2, 4, 4)]),  # negative axis, three inputs
    (0, [(1, 3), (4, 3)]),
    (-1, [(2, 3), (2, 1)]),
    (0, [(2, 2)]),  # one input
])
def test_concat(axis, shapes):
    inputs = {f"x{i}": normal(*shape) for i, shape in enumerate(shapes)}
    check("Concat", inputs, rtol=0, atol=0, axis=axis)


def test_concat_errors_name_axis_and_shapes():
    a, b = normal(2, 3, 4), normal(2, 3, 5)
    with pytest.raises(ValueError, match=r"Concat: input shapes \[\(2, 3, 4\), \(2, 3, 5\)\] differ outside axis 1"):
        reference.concat(a, b, axis=1)
    with pytest.raises(ValueError, match=r"Concat: axis -4 is out of range \[-3, 2\] for input shape \(2, 3, 4\)"):
        reference.concat(a, a, axis=-4)
    with pytest.raises(ValueError, match=r"Concat: input shapes \[\(2, 3, 4\), \(2, 3\)\] differ"):
        reference.concat(a, normal(2, 3), axis=1)


@pytest.mark.parametrize("op_type", ["LogSoftmax", "Softmax"])
@pytest.mark.parametrize("axis", [None, -1, 0, 1, -2])
def test_log_softmax_and_softmax_along_any_axis(op_type, axis):
    x = normal(3, 4, 5, scale=20.0)
    x[0, 0, 0] = 500.0  # large logits must not overflow
    attrs = {} if axis is None else {"axis": axis}
    check(op_type, {"input": x}, rtol=1e-5, atol=1e-5, **attrs)


@pytest.mark.parametrize("input_shape,shape", [((3, 1), (2, 1, 6)), ((1,), (4, 2)), ((2, 3), (1, 1)), ((), (2, 3))])
def test_expand(input_shape, shape):
    check("Expand", {"input": normal(*input_shape), "shape": np.array(shape, np.int64)}, rtol=0, atol=0)


def test_expand_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"Expand: input shape \(2, 3\) does not broadcast to shape \(4, 3, 2\)"):
        reference.OPS["Expand"](normal(2, 3), np.array([4, 3, 2]))


@pytest.mark.parametrize("to_dtype", [np.float32, np.int64, np.float64])
def test_cast_like(to_dtype):
    x = np.float32([-2.7, -0.5, 0.0, 0.5, 3.9, 100.0])
    actual, expected = both("CastLike", {"input": x, "target_type": np.zeros(1, to_dtype)}, out_dtype=to_dtype)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype == to_dtype
    np.testing.assert_allclose(actual, expected, rtol=0, atol=0)


def test_log_softmax_axis_out_of_range():
    with pytest.raises(ValueError, match=r"LogSoftmax: axis 3 is out of range \[-3, 2\] for input shape \(2, 3, 4\)"):
        reference.log_softmax(normal(2, 3, 4), axis=3)


@pytest.mark.parametrize("node,inputs,message", [
    # Clip before opset 11 took min and max as attributes; that form is not implemented
    (helper.make_node("Clip", ["x"], ["y"], name="c", min=0.0, max=6.0), [np.zeros(3, np.float32)],
     r"Clip attribute\(s\) max, min not supported"),
    (helper.make_node("MaxPool", ["x"], ["y", "i"], name="p", kernel_shape=[2, 2]),
     [np.zeros((1, 1, 4, 4), np.float32)], r"MaxPool output\(s\) i not supported"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], storage_order=1),
     [np.zeros((1, 1, 4, 4), np.float32)], r"storage_order=1"),
    (helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="d"),
     [np.zeros(3, np.float32), np.array(0.5, np.float32), np.array(True)], r"training_mode=True"),
    (helper.make_node("Pad", ["x", "p"], ["y"], name="pad", mode="wrap"),
     [np.zeros((2, 2), np.float32), np.array([1, 1, 1, 1])], r"mode 'wrap' is not supported"),
    (helper.make_node("Relu", ["x", "extra"], ["y"], name="r"),
     [np.zeros(3, np.float32), np.zeros(3, np.float32)], r"Relu input\(s\) extra not supported"),
    (helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1),
     [np.zeros((1, 2, 2, 2), np.float32)] + [np.ones(2, np.float32)] * 4, r"training_mode=1"),
])
def test_what_is_not_implemented_is_unsupported_never_approximated(node, inputs, message):
    with pytest.raises(UnsupportedError, match=rf"node '{node.name}'.*{message}"):
        reference.run_node(node, inputs)


class SmallMobileCNN:
    """Built lazily so that collecting this file does not import torch."""

    @staticmethod
    def build(in_channels: int = 3, classes: int = 5):
        import torch
        from torch import nn

        class Net(nn.Module):
            """What people write for a small mobile-style CNN: every layer the reference
            must follow when it comes through torch.onnx."""

            def __init__(self, width: int = 8):
                super().__init__()
                self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
                self.stem_bn = nn.BatchNorm2d(width)
                self.relu6 = nn.ReLU6()
                self.depthwise = nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width, bias=False)
                self.depthwise_bn = nn.BatchNorm2d(width)
                self.hardswish = nn.Hardswish()
                self.grouped = nn.Conv2d(width, width, 3, padding=1, groups=2)
                self.silu = nn.SiLU()
                self.leaky = nn.LeakyReLU(0.1)
                self.gate = nn.Hardsigmoid()
                self.shrink = nn.MaxPool2d(2)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.flatten = nn.Flatten()
                self.dropout = nn.Dropout(0.2)
                self.fc = nn.Linear(2 * width, classes)

            def forward(self, x):
                x = self.relu6(self.stem_bn(self.stem(x)))  # (N, width, H, W)
                y = self.hardswish(self.depthwise_bn(self.depthwise(x)))  # (N, width, H/2, W/2)
                x = self.shrink(x) + y  # residual add, (N, width, H/2, W/2)
                g = self.silu(self.grouped(x))
                g = self.leaky(g) * self.gate(g)
                x = torch.cat([x, g], dim=1)  # (N, 2 * width, H/2, W/2)
                x = self.flatten(self.pool(x))  # (N, 2 * width)
                x = self.fc(self.dropout(x))  # (N, classes)
                return torch.log_softmax(x, dim=1)

        torch.manual_seed(0)
        net = Net().eval()
        for module in net.modules():  # running statistics that are not the identity
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2.0)
        return net


@pytest.mark.parametrize("optimize", [True, False])
def test_a_small_cnn_from_torch_onnx_runs_whole_in_the_reference(optimize):
    """The dynamo exporter at opset 18, with and without its graph optimizer (which folds
    BatchNormalization into Conv): the whole graph in the reference against onnxruntime."""
    import torch

    net = SmallMobileCNN.build()
    program = torch.onnx.export(net, (torch.zeros(2, 3, 32, 32),), dynamo=True, opset_version=OPSET,
                                optimize=optimize, input_names=["x"], output_names=["y"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    model = program.model_proto
    op_types = {node.op_type for node in model.graph.node}
    assert {"Conv", "Clip", "HardSwish", "Sigmoid", "Mul", "Add", "LeakyRelu", "HardSigmoid",
            "Concat", "LogSoftmax"} <= op_types
    groups = {a.i for node in model.graph.node if node.op_type == "Conv" for a in node.attribute if a.name == "group"}
    assert {2, 8} <= groups  # the grouped and the depthwise convolution
    x = normal(4, 3, 32, 32, scale=1.0)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    actual = reference.run(model, {"x": x})["y"]
    assert actual.shape == expected.shape == (4, 5)
    assert actual.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
