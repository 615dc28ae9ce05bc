from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("token_entropy")
def token_entropy() -> str:
    """Token entropy of the qkv, projection, fc1 and fc2 outputs, u = 1 (Nguyen & Cheung).
    Token entropy (Nguyen & Cheung, "Dissecting Representation Structure in Vision Transformers"):
    sum over the qkv, attention-projection, fc1 and fc2 outputs (QKV+MHSA_out+M1+M2, their best set) of
    tokens x the smallest token entropy (u = 1), image 0, eval mode. ``token_entropy`` per layer. The
    paper defines Shannon entropy without saying how a real token vector becomes a distribution;
    here it is softmax over the token's features (a choice, see ``autoprox.stats.features``)."""
    return "element_wise_sum(agg_sum_attn(token_entropy), agg_sum_mlp(token_entropy))"
