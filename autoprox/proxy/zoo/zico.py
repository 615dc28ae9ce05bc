from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("zico")
def zico() -> str:
    """ZiCo (Li et al. 2023): sum over layers of log(sum of mean|g| / std g over batch splits)."""
    return "agg_sum(log(sum(grad_snr)))"
