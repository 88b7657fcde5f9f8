"""The model registry: one dict of builders and a decorator that fills it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:  # the registry itself needs no torch; zoo.models, which fills it, does
    from torch import nn

Builder = TypeVar("Builder", bound=Callable[..., "nn.Module"])

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def _filled() -> dict[str, Callable[..., nn.Module]]:
    from . import models  # noqa: F401  (registers the zoo's models on first use)

    return _MODELS


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Register a keyword-only builder under `name`; a second use of a name is an error."""

    def wrapper(builder: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = builder
        return builder

    return wrapper


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_filled())


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _filled()[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        ) from None


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a fresh, untrained model by name; keyword arguments go to its builder."""
    return get_model_builder(name)(**kwargs)
