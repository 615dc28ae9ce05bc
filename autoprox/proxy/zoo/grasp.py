from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("grasp")
def grasp() -> str:
    """GraSP (Wang et al. 2020): -sum over Linear/Conv layers of W * Hg (Hessian-gradient product;
    ``grasp_saliency``: each layer's sum over all its weights).
    Deliberate choice: g = dL/dW and Hg = d/dW sum(g * stop_grad(g)) come from one seeded train-mode
    forward (double backward), so both see the same DropPath mask; the public code runs two forwards
    (two masks in train mode)."""
    return "negate(agg_sum(grasp_saliency))"
