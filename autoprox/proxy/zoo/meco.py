from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("meco")
def meco() -> str:
    """MeCo (NeurIPS 2023): summed smallest eigenvalues of the layers' feature correlations.
    MeCo (Jiang et al., NeurIPS 2023): sum over layers of the smallest eigenvalue of the Pearson
    correlation of the layer's feature map for image 0 (NaN -> 0). On a ViT output (B, tokens, width)
    the official code's rows are tokens, as here. Deliberate choices: the layers are the weight
    layers with token outputs (qkv, projection, fc1, fc2), not every module (the official hooks
    every module, containers included); eval mode, no gradient."""
    return "agg_sum(meco)"
