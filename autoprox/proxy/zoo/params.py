from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("params")
def params() -> str:
    """Number of parameters of the model (analytic, no data)."""
    return "num_params"
