from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("epe_nas")
def epe_nas() -> str:
    """EPE-NAS (ICANN 2021): per-class correlations of the images' input Jacobians.
    EPE-NAS (Lopes et al., ICANN 2021): per class, sum log(|corr(J_c)| + 1e-5) of the images'
    input Jacobians d sum(logits)/d image; summed in absolute value over classes (<= 100 classes;
    more: normalised pairwise differences). Train mode, as the official code. See
    ``autoprox.stats.jacobian``."""
    return "epe_nas"
