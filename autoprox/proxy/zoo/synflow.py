from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("synflow")
def synflow() -> str:
    """SynFlow (Tanaka et al. 2020): sum of |W| * dR/d|W|, R = sum(logits) of an all-ones image."""
    return "agg_sum(sum(element_wise_product(abs(weight), virtual_grad)))"
