"""Model registry: names -> builders, so the CLI and checkpoints can ask for a model by name.

Every registered builder takes ``num_classes`` and ``in_channels`` (plus its own keyword options,
``dtype`` and ``seed``/``rng`` among them) and returns a Model. The model it returns carries
``model.config = {"name": ..., "num_classes": ..., "in_channels": ..., **options}``: the
explicitly given options, ``dtype`` written as its name ("float32") so the config is JSON-ready,
and ``rng`` left out (a checkpoint restores the weights, so only the architecture matters), so
``get(**model.config)`` builds the same architecture again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np

from cnnkit.nn import Module

_BUILDERS: dict[str, Callable[..., Module]] = {}
_NOT_IN_CONFIG = ("rng",)


def _config_value(key: str, value):
    if key == "dtype":
        return np.dtype(value).name
    return value


def register(name: str) -> Callable[[Callable[..., Module]], Callable[..., Module]]:
    """Decorator registering a model builder under ``name``; the builder then records its config."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(builder: Callable[..., Module]) -> Callable[..., Module]:
        if name in _BUILDERS:
            raise ValueError(f"a model named {name!r} is already registered")
        signature = inspect.signature(builder)
        missing = [p for p in ("num_classes", "in_channels") if p not in signature.parameters]
        if missing:
            raise TypeError(f"model builder {name!r} must take {' and '.join(missing)}")

        @functools.wraps(builder)
        def build(*args, **kwargs) -> Module:
            try:
                given = signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"model {name!r}: {error}") from None
            model = builder(*given.args, **given.kwargs)
            full = signature.bind(*args, **kwargs)
            full.apply_defaults()
            config = {
                "name": name,
                "num_classes": full.arguments["num_classes"],
                "in_channels": full.arguments["in_channels"],
            }
            for key, value in given.arguments.items():
                if key not in config and key not in _NOT_IN_CONFIG:
                    config[key] = _config_value(key, value)
            model.config = config
            return model

        build.model_name = name
        _BUILDERS[name] = build
        return build

    return decorator


def list_models() -> list[str]:
    """The registered model names, sorted (exported as ``cnnkit.models.list``)."""
    return sorted(_BUILDERS)


def takes_option(name: str, option: str) -> bool:
    """Whether the registered model ``name`` accepts the keyword ``option`` (e.g. "input_size")."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return option in inspect.signature(_BUILDERS[name]).parameters


def get(name: str, **kwargs) -> Module:
    """Build the registered model ``name`` (e.g. get("resnet20", num_classes=10, in_channels=3)).

    Options left out take the builder's own defaults: 10 classes and 1 channel for the small
    models, 1000 classes and 3 channels for the ImageNet-sized Xception.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _BUILDERS[name](**kwargs)
