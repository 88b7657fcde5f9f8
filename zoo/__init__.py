"""A zoo of small CNNs for MNIST and Fashion-MNIST."""

from . import models as _models  # noqa: F401  (fills the registry)
from .registry import get_model, list_models, register_model

__all__ = ["get_model", "list_models", "register_model"]
