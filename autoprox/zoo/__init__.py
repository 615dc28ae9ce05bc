"""The zoo of named proxies: one file per proxy, registered with ``@register_proxy``."""
from .registry import get_proxy, list_proxies, register_proxy, resolve_proxy
from . import autoprox_paper, dss, fisher, flops, grad_norm, jacov, naswot, params, snip, synflow  # noqa: F401

__all__ = ["get_proxy", "list_proxies", "register_proxy", "resolve_proxy"]
