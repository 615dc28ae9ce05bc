from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("grasp")
def grasp() -> str:
    """GraSP (Wang et al. 2020): -sum over Linear/Conv layers of W * Hg (Hessian-gradient product)."""
    return "negate(agg_sum(sum(element_wise_product(weight, hessian_grad))))"
