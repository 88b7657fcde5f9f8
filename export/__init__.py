"""PyTorch -> ONNX for the zoo's shipped models, checked node by node against an
independent NumPy implementation of the ONNX operators (export.reference)."""
