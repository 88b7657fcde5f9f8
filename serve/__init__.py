"""A gRPC inference service over onnxruntime for the zoo's exported models.

It imports no PyTorch: onnxruntime, grpcio, aiohttp, numpy and Pillow are all it needs;
the KServe and Triton protocol stubs are generated into serve/gen from Triton's own .proto
files (python -m serve.codegen).
"""

__version__ = "0.1.0"
