"""Warm-up: a version is ready only after it has run (zeros at batch 1 and at the largest
batch the batcher forms, or Triton's model_warmup from config.pbtxt); a warm-up that fails
is a version that is not ready, saying why."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from serve.server import create_server
from tests.own_models import linear_classifier
from tests.serving import serve_config

CONFIG = """name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [{ name: "x", data_type: TYPE_FP32, dims: [1, 8, 8] }]
output [{ name: "y", data_type: TYPE_FP32, dims: [4] }]
dynamic_batching { }
model_warmup [
  { name: "from a file", batch_size: 4, count: 3,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [1, 8, 8], input_data_file: "sample.bin" } } },
  { name: "random", batch_size: 16,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [1, 8, 8], random_data: true } } }%s
]
"""
BAD = """,
  { name: "wrong dims", batch_size: 1,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [3, 8, 8], zero_data: true } } }"""


def served(models_dir, **models_overrides):
    config = serve_config(models_dir)
    server = create_server(replace(config, models=replace(config.models, **models_overrides)))
    return server, server.plane.registry


def test_default_warm_up_runs_zeros_at_batch_1_and_the_largest_batch(models_dir):
    server, registry = served(models_dir)
    try:
        model = registry.models["lenet5-mnist"]
        assert model.warmup.startswith("warmed up in ") and model.warmup.endswith(
            "(zeros at batch 1 x2; zeros at batch 64 x2)")
        stats = server.plane.statistics("lenet5-mnist")[0]
        assert stats.inference_count == 0 and stats.execution_count == 0  # warm-up is not traffic
    finally:
        server.stop(grace=0)


def test_no_warmup(models_dir):
    server, registry = served(models_dir, warmup=False)
    try:
        assert registry.models["lenet5-mnist"].ready and registry.models["lenet5-mnist"].warmup == ""
    finally:
        server.stop(grace=0)


def write_repository(root, bad: bool = False):
    linear_classifier(root / "digits" / "1" / "model.onnx", batch="N")
    (root / "digits" / "config.pbtxt").write_text(CONFIG % (BAD if bad else ""))
    (root / "digits" / "warmup").mkdir()
    (root / "digits" / "warmup" / "sample.bin").write_bytes(np.ones((1, 8, 8), np.float32).tobytes())


def test_config_pbtxt_model_warmup_samples(tmp_path):
    write_repository(tmp_path)
    server, registry = served(tmp_path)
    try:
        model = registry.models["digits"]
        assert model.ready and "(model_warmup 'from a file' x3; model_warmup 'random' x1)" in model.warmup
    finally:
        server.stop(grace=0)


def test_a_warm_up_that_fails_leaves_the_version_not_ready_saying_why(tmp_path):
    write_repository(tmp_path, bad=True)
    server, registry = served(tmp_path)
    try:
        model = registry.versions["digits"]["1"]
        assert not model.ready
        assert "model.onnx: warm-up (model_warmup 'wrong dims') failed: " in model.error
        assert "Got invalid dimensions for input: x" in model.error
    finally:
        server.stop(grace=0)
