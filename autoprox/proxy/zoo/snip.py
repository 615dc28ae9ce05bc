from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("snip")
def snip() -> str:
    """SNIP (Lee et al. 2019): sum over Linear/Conv layers of |W * dL/dW|."""
    return "agg_sum(sum(abs(element_wise_product(weight, weight_grad))))"
