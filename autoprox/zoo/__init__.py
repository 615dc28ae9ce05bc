"""The zoo of named proxies: one file per proxy, registered with ``@register_proxy``."""
from .registry import get_proxy, list_proxies, register_proxy, resolve_proxy
from . import flops, params  # noqa: F401  (registration)

__all__ = ["get_proxy", "list_proxies", "register_proxy", "resolve_proxy"]
