from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("naswot")
def naswot() -> str:
    """NASWOT (Mellor et al. 2021): log|K|, K the agreement counts of GELU sign codes over the batch.
    Deliberate choice: the codes come from the space's own initialisation (the same model every
    other proxy sees, one seeded train-mode forward); the public code re-initialises the weights
    N(0, 1) first."""
    return "logdet(naswot_kernel)"
