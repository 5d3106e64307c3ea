"""A registry of network constructors by name (timm style), one per training backend."""
from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

Factory = Callable[..., Any]

#: ``lite``, the default network of both backends: chosen by measurement on openfield for speed and
#: accuracy together (benchmarks/README.md, "Default-model candidates"). Runs record the resolved
#: arguments in their config, so a later change here does not change what an old run builds.
LITE = ("resnet_slim", {"width": 0.75})


class ModelRegistry:
    """Names -> factories ``factory(num_keypoints, **kwargs)``, with aliases such as ``lite``.

    ``where`` names the backend in error messages (e.g. " for the TensorFlow backend").
    """

    def __init__(self, where: str = "") -> None:
        self.where = where
        self._factories: dict[str, Factory] = {}
        self._aliases: dict[str, tuple[str, dict[str, Any]]] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        """Decorator: register a factory under ``name``."""

        def deco(factory: Factory) -> Factory:
            if name in self._factories or name in self._aliases:
                raise ValueError(f"model name {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return deco

    def register_alias(self, alias: str, target: str, **defaults: Any) -> None:
        """Make ``alias`` (e.g. ``lite``) build the registered model ``target``, with ``defaults``
        for its arguments (a config may still override them)."""
        if target not in self._factories:
            raise ValueError(f"alias {alias!r} points to unknown model {target!r}")
        if alias in self._factories:
            raise ValueError(f"alias {alias!r} clashes with a registered model")
        self._aliases[alias] = (target, defaults)

    def names(self, include_aliases: bool = True) -> list[str]:
        return sorted(set(self._factories) | (set(self._aliases) if include_aliases else set()))

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` (aliases resolved); ValueError naming the choices."""
        canonical = self._aliases[name][0] if name in self._aliases else name
        if canonical not in self._factories:
            raise ValueError(f"unknown model {name!r}{self.where}; available: {', '.join(self.names())}")
        return canonical

    def arguments(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` over an alias's defaults, checked against the factory's arguments."""
        canonical = self.resolve(name)
        merged = {**(self._aliases[name][1] if name in self._aliases else {}), **kwargs}
        allowed = [p for p in inspect.signature(self._factories[canonical]).parameters if p != "num_keypoints"]
        unknown = sorted(set(merged) - set(allowed))
        if unknown:
            raise ValueError(f"model {canonical!r}{self.where} got unknown argument(s) {unknown}; "
                             f"allowed: {allowed}")
        return merged

    def factory(self, name: str) -> Factory:
        return self._factories[self.resolve(name)]

    def build(self, name: str, num_keypoints: int, **kwargs: Any) -> tuple[str, Any]:
        """(canonical name, model); unknown names, arguments or a bad keypoint count raise ValueError."""
        if not isinstance(num_keypoints, numbers.Integral) or isinstance(num_keypoints, bool) or num_keypoints < 1:
            raise ValueError(f"num_keypoints must be a positive int, got {num_keypoints!r}")
        kwargs = self.arguments(name, kwargs)
        canonical = self.resolve(name)
        return canonical, self._factories[canonical](int(num_keypoints), **kwargs)
