from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("grad_norm")
def grad_norm() -> str:
    """Sum over Linear/Conv layers of the Frobenius norm of dL/dW (``weight_grad_norm``, per layer)."""
    return "agg_sum(weight_grad_norm)"
