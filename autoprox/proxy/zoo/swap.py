from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("swap")
def swap() -> str:
    """SWAP (ICLR 2024): distinct sample-wise GELU sign patterns, without the size regulariser.
    SWAP (Peng et al., ICLR 2024; the GELU-aware SWAP_Universal): the number of distinct
    sample-wise activation patterns, each (token, unit) of every GELU a neuron whose pattern is its
    sign (GELU(z) > 0 iff z > 0) over the first 16 images, eval mode. Without the size regulariser
    exp(-(P - mu)^2 / sigma), whose mu and sigma are a user's parameter budget (the code has no
    defaults)."""
    return "swap_patterns"
