from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("zico")
def zico() -> str:
    """ZiCo (Li et al. 2023): sum over layers of log(sum of mean|g| / std g over batch splits).
    Deliberate choice: as in the paper, mean and (population) std are over the gradients of
    ``grad_groups`` separate splits of the batch (one backward each), not one full-batch ratio as
    in the public Auto-Prox code; a weight whose std is 0 contributes 0. ``zico_snr``: each layer's
    sum over all its weights."""
    return "agg_sum(log(zico_snr))"
