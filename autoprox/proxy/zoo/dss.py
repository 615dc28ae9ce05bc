from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("dss")
def dss() -> str:
    """TF-TAS DSS: attention linears ||dW||_nuc * ||W||_nuc, other linears sum|dW * W|, on the |W| pass.
    The |W| pass is SynFlow's (all-ones image, R = sum(logits), eval mode: DropPath off). Deliberate
    choice: the layers are split by kind, attention = qkv and proj; every other weight layer except the
    patch embedding (MLP, head and, on PiT, the pooling conv and the pooling cls fc) takes the
    SynFlow-like sum (the public Auto-Prox code treats PiT's pooling conv and square pooling
    fc otherwise). ``dss_nuclear`` and ``synflow_saliency`` are per-layer, over all weights."""
    return "element_wise_sum(agg_sum_attn(dss_nuclear), agg_sum_nonattn(synflow_saliency))"
