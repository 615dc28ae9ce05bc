from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("snip")
def snip() -> str:
    """SNIP (Lee et al. 2019): sum over Linear/Conv layers of |W * dL/dW| (``snip_saliency``: each
    layer's sum over all its weights)."""
    return "agg_sum(snip_saliency)"
