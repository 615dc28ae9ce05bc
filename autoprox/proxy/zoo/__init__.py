"""The zoo of named proxies: one file per proxy, registered with ``@register_proxy``."""
from autoprox.proxy.zoo.registry import get_proxy, has_proxy, list_proxies, register_proxy, unknown_proxy
from autoprox.proxy.zoo import (autoprox_paper, depth_width, dss, evolved_autoformer, evolved_c100_kd, evolved_generic,  # noqa: F401
                                evolved_pit, fisher, flops, grad_norm, grasp, jacov, naswot, params, snip, synflow, tvt,
                                zico)

__all__ = ["get_proxy", "has_proxy", "list_proxies", "register_proxy", "unknown_proxy"]
