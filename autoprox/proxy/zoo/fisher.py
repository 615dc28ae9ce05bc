from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("fisher")
def fisher() -> str:
    """Fisher (Turner et al. 2020): sum over Linear inputs x of 0.5 mean_b sum_c (sum_t x dL/dx)^2.
    Deliberate choice: the activations are the Linear layers' inputs (the paper's per-channel
    activation), not the public Auto-Prox code's layer outputs scaled by the fan-in."""
    return "agg_sum(fisher)"
