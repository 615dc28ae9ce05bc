from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.graph import GraphProxy
from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("tvt")
def tvt() -> FusedProxy:
    """TVT: rank-sum over archs of -teacher_gap (attention-map gap to a ConvNet teacher, --teacher)
    and sum over Linear/Conv layers of ||W||_2 (flattened L2 = Frobenius norm)."""
    return FusedProxy("tvt", (GraphProxy.from_text("tvt_teacher", "negate(teacher_gap)",
                                                   "minus the attention-map gap to the teacher"),
                              GraphProxy.from_text("tvt_capability", "agg_sum(weight_norm)",
                                                   "sum over weight layers of ||W||_F")),
                      "rank_sum", (tvt.__doc__ or "").strip())
