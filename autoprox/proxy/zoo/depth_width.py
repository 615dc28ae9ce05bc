from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("depth_width")
def depth_width() -> str:
    """Structural baseline log(depth) + log(width): blocks and mean block width (no data, no model)."""
    return "element_wise_sum(log(depth), log(width))"
