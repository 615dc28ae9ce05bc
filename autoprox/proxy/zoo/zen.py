from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("zen")
def zen() -> str:
    """Zen-score (ICCV 2021), Auto-Prox's ViT port: log of the features' response to input noise.
    Zen-score (Lin et al., ICCV 2021; the ViT port of the Auto-Prox code): log mean_b
    sum|f(x) - f(x + 0.01 eps)|, f the head's input, x and eps Gaussian, Linear/Conv2d weights
    re-drawn N(0, 1); a ViT has no BatchNorm, so the variance term is 0. See ``autoprox.stats.zen``."""
    return "zen_score"
