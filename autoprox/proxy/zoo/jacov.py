from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("jacov")
def jacov() -> str:
    """jacob_cov (Mellor et al. 2021): -sum(log l + 1/l), l the eigenvalues of the input-gradient correlation."""
    return ("negate(sum(element_wise_sum(log(eigvalsh(input_grad_corr)), "
            "invert(eigvalsh(input_grad_corr)))))")
