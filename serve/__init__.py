"""A gRPC inference service over onnxruntime for the zoo's exported models.

It imports no PyTorch: onnxruntime, grpcio, numpy, Pillow and the KServe stubs that
tritonclient ships are all it needs.
"""

__version__ = "0.1.0"
