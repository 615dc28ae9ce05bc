"""The named-proxy registry: ``@register_proxy("name")`` on a zero-argument factory.

A factory returns either a proxy expression (a string, compiled to a ``GraphProxy``
named after the registry entry, its docstring as description) or any object with
``name``, ``families`` and ``score(stats)``, or a fused proxy (``parts`` + ``fuse``, see
``autoprox.fuse``) whose score of an arch depends on the other archs scored with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..graph import GraphProxy
from ..registry import Registry
from ..scoring import Proxy

_FACTORIES: Registry[Callable[[], object]] = Registry("proxy")


def register_proxy(name: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
    return _FACTORIES.register(name)


def list_proxies() -> list[str]:
    return _FACTORIES.names()


def get_proxy(name: str) -> Proxy:
    factory = _FACTORIES.get(name)
    made = factory()
    if isinstance(made, str):
        return GraphProxy.from_text(name, made, (factory.__doc__ or "").strip())
    return made  # type: ignore[return-value]


def resolve_proxy(spec: str) -> Proxy:
    """A zoo name, or the path of a proxy file (YAML written by export/evolve)."""
    if spec in _FACTORIES:
        return get_proxy(spec)
    if Path(spec).suffix in (".yaml", ".yml") or Path(spec).is_file():
        from ..export import load_proxy  # local: export depends on the zoo's peers only
        return load_proxy(spec)
    return get_proxy(spec)  # raises with the list of known names
