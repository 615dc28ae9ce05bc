"""The zoo of named proxies: one file per proxy, registered with ``@register_proxy``."""
from autoprox.proxy.zoo.registry import get_proxy, has_proxy, list_proxies, register_proxy, unknown_proxy
from autoprox.proxy.zoo import (apd, autoprox_paper, az_nas, depth_width, dss, epe_nas, evolved_autoformer,  # noqa: F401
                                evolved_c100_kd, evolved_generic, evolved_pit, fisher, flops, grad_norm, grasp, jacov,
                                meco, naswot, params, snip, swap, synflow, te_nas, token_entropy, token_entropy_mlp,
                                token_min_eig, tvt, zen, zico)

__all__ = ["get_proxy", "has_proxy", "list_proxies", "register_proxy", "unknown_proxy"]
