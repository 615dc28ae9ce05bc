from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("flops")
def flops() -> str:
    """Multiply-accumulates of one forward pass on one image (analytic, no data)."""
    return "flops"
