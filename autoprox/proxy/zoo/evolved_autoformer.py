"""Found by ``autoprox evolve --config runs/autoformer.yaml``, picked on the run's validation fold
(folds 60/20/20 archs, ``split_seed`` 0; JCM = mean Kendall tau over the KD targets).
Figures: benchmarks/results/discovery.md.

On OoD-ViT-NAS AutoFormer-Tiny (ImageNet top-1; archs it was not found on) it ranks below token
entropy, ZiCo and depth alone: it does not pass the rule a shipped discovery must pass (beat every
alternative on data it was not selected on), and stays as the record of its run
(benchmarks/results/transfer.md, 2026-12-05)."""
from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("evolved_autoformer")
def evolved_autoformer() -> str:
    """runs/autoformer.yaml: a NASWOT-kernel variant."""
    return "mean(max(sum(element_wise_sum(eigvalsh(max(naswot_kernel)),log(naswot_kernel)))))"
