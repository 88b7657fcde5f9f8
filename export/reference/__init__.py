"""An independent NumPy implementation of the ONNX operators that small CNNs exported
by torch.onnx use (opset 17 and later): Conv (grouped and depthwise too), the pools,
BatchNormalization, Gemm/MatMul, broadcasting Add/Sub/Mul/Div, Concat, the activations
(Relu, Clip for ReLU6, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh), Softmax and
LogSoftmax, the shape plumbing around them, and for int8 models QuantizeLinear,
DequantizeLinear, QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger and
DynamicQuantizeLinear (export/reference/quantization.py). `OPS` lists them all.

One function per operator, named and parameterised after the ONNX specification, and
`run(model, feeds)` to evaluate a whole graph. An operator, attribute, input or output it
does not implement raises UnsupportedError; nothing is approximated. It shares no code
with PyTorch or onnxruntime, which is what makes it a check on both.
"""

from .activations import clip, hard_sigmoid, hard_swish, leaky_relu, relu, sigmoid, tanh
from .convolution import conv
from .errors import UnsupportedError
from .graph import OPS, run, run_node
from .pooling import average_pool, global_average_pool, global_max_pool, max_pool
from .quantization import (conv_integer, dequantize_linear, dynamic_quantize_linear, matmul_integer, qlinear_conv,
                           qlinear_matmul, quantize_linear)
from .tensor_ops import add, batch_normalization, concat, div, gemm, log_softmax, mul, softmax, sub

__all__ = [
    "OPS", "UnsupportedError", "add", "average_pool", "batch_normalization", "clip", "concat",
    "conv", "conv_integer", "dequantize_linear", "div", "dynamic_quantize_linear", "gemm",
    "global_average_pool", "global_max_pool", "hard_sigmoid", "hard_swish", "leaky_relu",
    "log_softmax", "matmul_integer", "max_pool", "mul", "qlinear_conv", "qlinear_matmul",
    "quantize_linear", "relu", "run", "run_node", "sigmoid", "softmax", "sub", "tanh",
]
