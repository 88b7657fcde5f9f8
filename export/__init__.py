"""PyTorch -> ONNX for the zoo's models and for any small CNN, checked node by node against
an independent NumPy implementation of the ONNX operators (export.reference); and
verification of any ONNX file (export.verify.verify).

    from export import export_checked
    result = export_checked(net, "models/my-net.onnx", input_shape=(3, 32, 32), ...)
"""


def __getattr__(name: str):  # importing `export` stays light; the API imports torch when used
    if name == "export_checked":
        from .custom import export_checked

        return export_checked
    raise AttributeError(f"module 'export' has no attribute {name!r}")
