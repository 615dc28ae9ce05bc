from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("grasp")
def grasp() -> str:
    """GraSP (Wang et al. 2020): -sum over Linear/Conv layers of W * Hg (Hessian-gradient product;
    ``grasp_saliency``: each layer's sum over all its weights).
    Deliberate choice: g = dL/dW of the batch's mean loss and Hg = d/dW sum(g * stop_grad(g)) come from
    two sweeps over the base pass's chunks with one seed, so both see the same DropPath masks; the public
    code runs two forwards (two masks in train mode)."""
    return "negate(agg_sum(grasp_saliency))"
