from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("swap")
def swap() -> str:
    """SWAP (ICLR 2024): distinct sample-wise GELU sign patterns, without the size regulariser.
    SWAP (Peng et al., ICLR 2024; the GELU-aware SWAP_Universal): the number of distinct
    sample-wise activation patterns, each (token, unit) of every GELU a neuron whose pattern is its
    sign (GELU(z) > 0 iff z > 0) over every image of the batch, eval mode (SWAP's Transformer script
    scores its whole input batch; its CNN default of 16 images leaves 2^16 possible patterns, which
    AutoFormer's millions of neurons nearly all show). Without the size regulariser
    exp(-(P - mu)^2 / sigma), whose mu and sigma are a user's parameter budget (the code has no
    defaults)."""
    return "swap_patterns"
