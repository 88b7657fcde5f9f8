"""The committed gRPC stubs are exactly what `python -m serve.codegen` generates now."""

from __future__ import annotations

from serve import codegen


def test_generated_stubs_are_current(tmp_path):
    fresh = codegen.generate(tmp_path)
    assert {p.name for p in fresh} == {f"{proto}_pb2{suffix}" for proto in ("predictor", "onnx_subset", "grpc_service", "model_config", "reflection_v1")
                                       for suffix in (".py", ".pyi", "_grpc.py")}
    for path in fresh:
        committed = codegen.GEN / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run `python -m serve.codegen` and commit the result")
