"""Found by ``autoprox evolve --config runs/c100_kd.yaml --cv 5`` (AutoFormer ranked by CIFAR-100
KD accuracy alone; every cheap statistic, the arch's shape and fused genomes as leaves): the pick of
the final run, which has no test fold, chosen on validation. It is shipped because the procedure
that found it beats #params and ``depth_width`` out of fold, pooled over two partitions of the archs;
that figure is the procedure's, not this formula's (benchmarks/results/discovery.md, 2026-11-29).

On OoD-ViT-NAS AutoFormer-Tiny (ImageNet top-1; archs it was not found on) it ranks below token
entropy, ZiCo and depth alone: it does not pass the rule a shipped discovery must pass (beat every
alternative on data it was not selected on), and stays as the record of its run
(benchmarks/results/transfer.md, 2026-12-05)."""
from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.graph import GraphProxy
from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("evolved_c100_kd")
def evolved_c100_kd() -> FusedProxy:
    """runs/c100_kd.yaml (AutoFormer, CIFAR-100 KD): rank-sum over archs of sum_l mean|linear_input_l|,
    depth and #params."""
    parts = (("evolved_c100_kd_mass", "agg_sum(sum(mean(abs(linear_input))))",
              "sum over Linear layers of mean |input|"),
             ("evolved_c100_kd_depth", "depth", "number of transformer blocks"),
             ("evolved_c100_kd_size", "num_params", "#params"))
    return FusedProxy("evolved_c100_kd", tuple(GraphProxy.from_text(*p) for p in parts), "rank_sum",
                      (evolved_c100_kd.__doc__ or "").strip())
