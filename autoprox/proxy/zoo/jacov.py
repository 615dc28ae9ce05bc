from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("jacov")
def jacov() -> str:
    """jacob_cov (Mellor et al. 2021): -sum_i(log(l_i + k) + 1/(l_i + k)), k = 1e-5, l the eigenvalues of the
    correlation matrix of the per-image Jacobians d sum(logits) / d image (one train-mode forward)."""
    return ("negate(sum(element_wise_sum(log(add_k(eigvalsh(logit_jacobian_corr))), "
            "invert(add_k(eigvalsh(logit_jacobian_corr))))))")
