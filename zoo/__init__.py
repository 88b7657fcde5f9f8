"""A zoo of small CNNs for MNIST and Fashion-MNIST.

Importing `zoo` (or zoo.datasets, zoo.cli, ...) does not import torch: the command lines
check their arguments first, and the model registry is filled on first use.
"""

__all__ = ["get_model", "list_models", "register_model"]


def __getattr__(name: str):  # PEP 562: zoo.get_model etc. import torch only when used
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
