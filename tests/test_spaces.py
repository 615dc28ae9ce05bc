import random

import pytest
import torch
from torch import nn

from autoprox.data.benchmark import SHIPPED, load_benchmark
from autoprox.spaces import ArchError, get_space, list_spaces
from autoprox.spaces.layers import Attention
from autoprox.spaces.supernet import RelPosAttention
from primitives.registry import RegistryError

from conftest import SMALL


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_the_spaces():
    assert list_spaces() == ["autoformer", "autoformer-base", "autoformer-small", "autoformer-tiny", "pit"]
    with pytest.raises(RegistryError, match="known: autoformer, autoformer-base"):
        get_space("nasbench")


def test_autoformer_t_reference_count():
    arch = {"hidden_dim": 192, "depth": 13, "mlp_ratio": [3.5] * 13, "num_heads": [3] * 13}
    space = get_space("autoformer")
    assert space.num_params(arch, num_classes=1000) == 5_681_800  # REFERENCE: 5.68 M
    assert count(space.build(arch, num_classes=1000)) == 5_681_800


def test_pit_ti_reference_count():
    arch = {"base_dim": 32, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}
    space = get_space("pit")
    assert space.num_params(arch, num_classes=1000) == 4_847_272  # REFERENCE: 4.85 M
    assert count(space.build(arch, num_classes=1000)) == 4_847_272


@pytest.mark.parametrize("space,lo,hi", [("autoformer", 5_284_996, 9_746_260), ("pit", 156_612, 29_472_420)])
def test_benchmark_param_range(space, lo, hi):
    s = get_space(space)
    counts = [s.num_params(a, num_classes=100) for a in load_benchmark(space).archs]
    assert (min(counts), max(counts)) == (lo, hi)


@pytest.mark.parametrize("name", list_spaces())
def test_analytic_counts_match_built_model(name):
    space, rng = get_space(name), random.Random(1)
    for _ in range(3):
        arch = space.sample(rng)
        model = space.build(arch, num_classes=10, img_size=32)
        assert count(model) == space.num_params(arch, num_classes=10, img_size=32)
        assert measured_macs(model, 32) == space.flops(arch, num_classes=10, img_size=32)


def measured_macs(model: nn.Module, res: int) -> int:
    """MACs counted by hooks on Linear/Conv2d plus attention matmuls."""
    total = 0

    def lin(m, i, o):
        nonlocal total
        total += o[0].numel() // o.shape[-1] * m.in_features * m.out_features if o.dim() > 1 else 0

    def conv(m, i, o):
        nonlocal total
        total += o[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def rel(n):
        nonlocal total
        total += n

    def attn(m, i, o):
        nonlocal total
        b, n, c = i[0].shape
        total += 2 * n * n * c

    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lin)
        elif isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, Attention):
            m.register_forward_hook(attn)
        elif isinstance(m, RelPosAttention):  # QK^T, attn @ V and both relative-position products
            m.register_forward_hook(lambda m, i, o: rel(i[0].shape[1] ** 2 * 4 * m.width))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, res, res))
    return total


@pytest.mark.parametrize("name", list_spaces())
def test_sample_mutate_crossover_stay_legal(name):
    space, rng = get_space(name), random.Random(0)
    seen = set()
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        for child in (space.mutate(a, rng, 0.5), space.crossover(a, b, rng)):
            assert space.validate(child) == child
        seen.add(space.key(a))
    assert len(seen) > 150  # sampling explores the space


@pytest.mark.parametrize("name", list_spaces())
def test_build_is_deterministic_and_leaves_global_rng(name):
    space = get_space(name)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    m1 = space.build(SMALL[name], num_classes=10, img_size=32, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    m2 = space.build(SMALL[name], num_classes=10, img_size=32, seed=7)
    m3 = space.build(SMALL[name], num_classes=10, img_size=32, seed=8)
    p1, p2, p3 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)


@pytest.mark.parametrize("arch,field", [
    ({"hidden_dim": 200, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [4] * 12}, "hidden_dim"),
    ({"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 11, "num_heads": [4] * 12}, "mlp_ratio"),
    ({"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [4] * 11 + [5]}, r"num_heads\[11\]"),
    ({"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12}, "missing field"),
    ({"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [4] * 12, "x": 1}, "unknown field"),
])
def test_autoformer_errors_name_the_field(arch, field):
    with pytest.raises(ArchError, match=field):
        get_space("autoformer").validate(arch)


@pytest.mark.parametrize("arch,field", [
    ({"base_dim": 48, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}, "base_dim"),
    ({"base_dim": 32, "mlp_ratio": 4, "depth": [2, 6, 5], "num_heads": [2, 4, 8]}, "depth"),
    ({"base_dim": 32, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [8, 4, 2]}, "num_heads"),
    ({"base_dim": 32, "mlp_ratio": 3, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}, "mlp_ratio"),
])
def test_pit_errors_name_the_field(arch, field):
    with pytest.raises(ArchError, match=field):
        get_space("pit").validate(arch)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_benchmark_arch_is_in_its_space(name):
    space = get_space(name)
    for a in load_benchmark(name).archs:
        space.validate(a)
