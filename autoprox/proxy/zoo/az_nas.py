from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.graph import GraphProxy
from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("az_nas")
def az_nas() -> FusedProxy:
    """AZ-NAS (CVPR 2024): log-rank sum of expressivity, trainability and FLOPs over the archs.
    AZ-NAS (Lee & Ham, CVPR 2024; its AutoFormer code): sum over indicators of log(rank / n) among
    the archs scored together, of expressivity (sum over the 2 x depth residual features of the
    eigenvalue entropy of their covariance), trainability (mean over consecutive features of
    -sigma - 1/sigma + 2, sigma the spectral norm of a Rademacher Jacobian estimate) and complexity
    (FLOPs). The ViT code has no progressivity term. See ``autoprox.stats.block_spectra``."""
    parts = (("az_nas_expressivity", "agg_sum(block_expressivity)", "sum of the blocks' eigenvalue entropies"),
             ("az_nas_trainability", "agg_mean(block_trainability)", "mean Jacobian spectral-norm score"),
             ("az_nas_complexity", "flops", "FLOPs"))
    return FusedProxy("az_nas", tuple(GraphProxy.from_text(*p) for p in parts), "log_rank_sum",
                      (az_nas.__doc__ or "").strip())
