"""Found by ``autoprox evolve --config runs/pit.yaml``, picked on the run's validation fold
(folds 60/20/20 archs, ``split_seed`` 0; JCM = mean Kendall tau over the KD targets).
Figures: benchmarks/results/discovery.md.

On OoD-ViT-NAS AutoFormer-Tiny (ImageNet top-1; archs it was not found on) it ranks below every
hand-designed proxy that reads its statistics and below #params: it does not pass the rule a shipped
discovery must pass (beat every alternative on data it was not selected on), and stays as the record
of its run (benchmarks/results/transfer.md, 2026-12-05)."""
from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("evolved_pit")
def evolved_pit() -> str:
    """runs/pit.yaml: mean_l(fisher_l + ||linear_input_l||_nuc)."""
    return "agg_mean(element_wise_sum(fisher,to_mean_scalar(abs(nuclear_norm(abs(linear_input))))))"
