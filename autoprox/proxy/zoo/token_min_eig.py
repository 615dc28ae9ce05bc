from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("token_min_eig")
def token_min_eig() -> str:
    """Token minimum eigenvalue of the linear outputs, u = 8 (Nguyen & Cheung).
    Token minimum eigenvalue (Nguyen & Cheung): per qkv, attention-projection, fc1 and fc2 output
    (image 0, eval mode), the smallest eigenvalue of the Pearson correlation of the u tokens with the
    lowest summed |correlation|, times tokens / u, summed. Deliberate choice: u = 8 (MeCo-opt's
    eight rows), not the paper's u = 1, whose 1 x 1 matrix makes every layer worth ``tokens``
    (the proxy would count layers)."""
    return "element_wise_sum(agg_sum_attn(token_min_eig), agg_sum_mlp(token_min_eig))"
