from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("synflow")
def synflow() -> str:
    """SynFlow (Tanaka et al. 2020): sum over weight layers of sum |W * dR/d|W||, the abs per element,
    R = sum(logits) of an all-ones image after every parameter is replaced by |w| (eval mode)."""
    return "agg_sum(sum(abs(element_wise_product(weight, virtual_grad))))"
