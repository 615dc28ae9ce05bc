from autoprox.proxy.zoo.registry import register_proxy


@register_proxy("depth_width")
def depth_width() -> str:
    """Structural baseline log(depth) + log(width), no data: blocks times mean block width, taken as one
    product so that archs with equal depth * width tie (a float32 sum of logs breaks 5 such PiT ties)."""
    return "log(element_wise_product(depth, width))"
