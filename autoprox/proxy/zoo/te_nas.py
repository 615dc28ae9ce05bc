from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("te_nas")
def te_nas() -> str:
    """TE-NAS (ICLR 2021), its trainability: minus the condition number of the batch's NTK.
    TE-NAS (Chen, Gong & Wang, ICLR 2021; VITA-Group/TENAS ``get_ntk_n``): -lambda_max/lambda_min of
    the Gram matrix of the per-image gradients of the summed logits over the weights, one seeded
    train-mode forward (see ``autoprox.stats.ntk``: Linear/Conv2d weights, one initialisation).
    TE-NAS ranks archs by the sum of this term's rank and the rank of the number of linear regions
    (distinct ReLU patterns over its inputs); on a ViT batch of 224 px images every image's GELU sign
    pattern is distinct, so that count is the batch size for every arch and the TE-score ranks archs
    as this term does."""
    return "negate(ntk_cond)"
