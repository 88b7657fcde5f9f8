"""A zoo of small CNNs for MNIST and Fashion-MNIST.

Importing `zoo` imports no torch: the command line checks its arguments first. The
registry's functions load the models (and torch) when first asked for.
"""

__all__ = ["get_model", "list_models", "register_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import models  # noqa: F401  (fills the registry)
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
