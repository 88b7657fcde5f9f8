"""An independent NumPy implementation of the ONNX operators our models use.

One function per operator, named and parameterised after the ONNX specification, and
`run(model, feeds)` to evaluate a whole graph. It shares no code with PyTorch or
onnxruntime, which is what makes it a check on both.
"""

from .tensor_ops import batch_normalization, gemm, softmax
from .convolution import conv
from .graph import OPS, UnsupportedError, run, run_node
from .pooling import average_pool, global_average_pool, global_max_pool, max_pool

__all__ = [
    "OPS", "UnsupportedError", "average_pool", "batch_normalization", "conv", "gemm",
    "global_average_pool", "global_max_pool", "max_pool", "run", "run_node", "softmax",
]
