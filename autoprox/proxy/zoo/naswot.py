from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("naswot")
def naswot() -> str:
    """NASWOT (Mellor et al. 2021): log|K|, K the agreement counts of GELU sign codes over the batch."""
    return "logdet(naswot_kernel)"
