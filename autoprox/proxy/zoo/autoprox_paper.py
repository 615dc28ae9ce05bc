from autoprox.proxy.genotype import parse_genotype
from autoprox.proxy.zoo.registry import register_proxy

GENOTYPE = ("INPUT:(t2, t4g)TREE:(min_max_normalize|frobenius_norm|sigmoid|element_wise_sqrt)"
            "BINARY:(element_wise_sum)")


@register_proxy("autoprox_paper")
def autoprox_paper() -> str:
    """The proxy Auto-Prox published for both spaces: mean_l(||minmax(t2)||_F + mean(sqrt(sigmoid(t4g))))."""
    return str(parse_genotype(GENOTYPE))
