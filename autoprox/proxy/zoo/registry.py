"""The named-proxy registry: ``@register_proxy("name")`` on a zero-argument factory.

A factory returns a proxy expression (a string, compiled to a ``GraphProxy`` named after
the registry entry, its docstring as description) or a ``FusedProxy`` (graph parts fused
across the archs scored together, see ``autoprox.proxy.fuse``). Resolving names, files and
expressions alike is ``autoprox.proxy.spec.resolve``.
"""
from __future__ import annotations

from typing import Callable, Union

from primitives.registry import Registry
from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.graph import GraphProxy

_FACTORIES: Registry[Callable[[], object]] = Registry("proxy")


def register_proxy(name: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
    return _FACTORIES.register(name)


def list_proxies() -> list[str]:
    return _FACTORIES.names()


def has_proxy(name: str) -> bool:
    return name in _FACTORIES


def unknown_proxy(name: str) -> str:
    """The error text for an unknown name: the nearest zoo name and the known ones."""
    return _FACTORIES.unknown(name)


def get_proxy(name: str) -> Union[GraphProxy, FusedProxy]:
    factory = _FACTORIES.get(name)
    made = factory()
    if isinstance(made, str):
        return GraphProxy.from_text(name, made, (factory.__doc__ or "").strip())
    if not isinstance(made, FusedProxy):
        raise TypeError(f"proxy factory {name!r} must return an expression or a FusedProxy")
    return made
