from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("synflow")
def synflow() -> str:
    """SynFlow (Tanaka et al. 2020): sum over weight layers of sum |W * dR/d|W||, the abs per element,
    R = sum(logits) of an all-ones image after every parameter is replaced by |w|. The abs per element
    is the paper's (signs would cancel otherwise). Deliberate choice: the |w| pass runs in eval mode
    (DropPath off, so R is deterministic), whatever mode the public Auto-Prox code uses.
    ``synflow_saliency``: each layer's sum over all its weights."""
    return "agg_sum(synflow_saliency)"
