from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("dss")
def dss() -> str:
    """TF-TAS DSS: attention linears ||dW||_nuc * ||W||_nuc, other linears sum|dW * W|, on the |W| pass."""
    return ("element_wise_sum("
            "agg_sum_attn(element_wise_product(nuclear_norm(virtual_grad), nuclear_norm(abs(weight)))), "
            "agg_sum_nonattn(sum(abs(element_wise_product(virtual_grad, abs(weight))))))")
