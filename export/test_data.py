"""ONNX Model Zoo style test data: test_data_set_0/input_0.pb and output_0.pb.

The input is a batch of real test images; the output is PyTorch's logits for them (not
onnxruntime's), so any runtime can check itself against the source framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from zoo.atomic import atomic_write_bytes

from .metadata import INPUT_NAME, OUTPUT_NAME


def write_test_data(directory: Path, images: np.ndarray, torch_logits: np.ndarray) -> Path:
    target = directory / "test_data_set_0"
    atomic_write_bytes(target / "input_0.pb",
                       numpy_helper.from_array(images, INPUT_NAME).SerializeToString())
    atomic_write_bytes(target / "output_0.pb",
                       numpy_helper.from_array(torch_logits, OUTPUT_NAME).SerializeToString())
    return target


def read_tensor(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(Path(path).read_bytes())
    return numpy_helper.to_array(tensor)
