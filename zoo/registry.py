"""The model registry: one dict of builders and a decorator that fills it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from torch import nn

Builder = TypeVar("Builder", bound=Callable[..., "nn.Module"])

# The names zoo/models.py registers, known here without importing torch, so a command line
# refuses a mistyped name at once (tests/test_models.py keeps the two equal).
BUILTIN_MODELS = ("lenet5", "lenet5-classic", "resnet-mini", "twoblock-cnn")

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Register a keyword-only builder under `name`; a second use of a name is an error."""

    def wrapper(builder: Builder) -> Builder:
        from . import models  # noqa: F401  (the built-in names first, so a clash is caught)

        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = builder
        return builder

    return wrapper


def list_models() -> list[str]:
    """The registered model names, sorted (the built-in ones without importing torch)."""
    return sorted(set(BUILTIN_MODELS) | set(_MODELS))


def check_model_name(name: str) -> str:
    """`name` if it is registered, else a ValueError listing the valid names."""
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return name


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    from . import models  # noqa: F401  (registers the built-in models; imports torch)

    return _MODELS[check_model_name(name)]


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a fresh, untrained model by name; keyword arguments go to its builder."""
    return get_model_builder(name)(**kwargs)
