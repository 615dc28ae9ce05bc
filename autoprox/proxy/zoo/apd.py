from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("apd")
def apd() -> str:
    """APD's discovered proxy (NeurIPS 2025): LayerNorm stable ranks x weight L1/L2 ratios.
    APD's discovered proxy (Kang, Lin & Wang, NeurIPS 2025), with LayerNorm and Linear/Conv2d in
    place of BatchNorm and Conv2d: (sum over LayerNorms of ||M||_F^2 / ||M||_2^2, M the output over the
    batch as (images x tokens) x width) x (sum over weight layers of mean_o sum|W_o| / mean_o ||W_o||_2,
    o the output units). One eval-mode forward of the proxy batch (the paper: 16 random samples,
    five forwards averaged)."""
    return "element_wise_product(agg_sum(norm_stable_rank), agg_sum(weight_l1_l2))"
