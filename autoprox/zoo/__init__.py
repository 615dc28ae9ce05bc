"""The zoo of named proxies: one file per proxy, registered with ``@register_proxy``."""
from .registry import get_proxy, list_proxies, register_proxy, resolve_proxy
from . import (autoprox_paper, dss, evolved_autoformer, evolved_generic, evolved_pit, fisher, flops,  # noqa: F401
               grad_norm, grasp, jacov, naswot, params, snip, synflow, tvt, zico)

__all__ = ["get_proxy", "list_proxies", "register_proxy", "resolve_proxy"]
