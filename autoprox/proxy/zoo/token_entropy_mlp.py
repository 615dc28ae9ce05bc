from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("token_entropy_mlp")
def token_entropy_mlp() -> str:
    """Token entropy of the fc1 and fc2 outputs only, u = 1 (Nguyen & Cheung's M1+M2).
    Token entropy on the MLP only (Nguyen & Cheung's M1+M2 set): sum over fc1 (before GELU) and fc2
    outputs of tokens x the smallest token entropy (u = 1), image 0, eval mode."""
    return "agg_sum_mlp(token_entropy)"
