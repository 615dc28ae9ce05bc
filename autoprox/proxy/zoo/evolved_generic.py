"""Found by ``autoprox evolve --config runs/generic.yaml`` (fitness: mean train-fold JCM over
AutoFormer and PiT), picked on the mean validation JCM (folds 60/20/20 archs per space,
``split_seed`` 0; JCM = mean Kendall tau over the KD targets). Figures: benchmarks/results/discovery.md.

On OoD-ViT-NAS AutoFormer-Tiny (ImageNet top-1; archs it was not found on) it ranks below token
entropy, ZiCo and depth alone (level with `depth_width`): it does not pass the rule a shipped
discovery must pass (beat every alternative on data it was not selected on), and stays as the record
of its run (benchmarks/results/transfer.md, 2026-12-05)."""
from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("evolved_generic")
def evolved_generic() -> str:
    """runs/generic.yaml: sum_l sum |linear_input_l|."""
    return "agg_sum(sum(abs(linear_input)))"
