"""AutoFormer's supernet spaces (Tiny, Small, Base): parameter counts as OoD-ViT-NAS records them."""
import random

import pytest
import torch
from torch import nn

from autoprox.spaces import ArchError, get_space
from autoprox.spaces.supernet import RelPosAttention, RelativePosition2D

# (arch, params in millions at 1,000 classes and 224 px) as OoD-ViT-NAS's files record them
RECORDED = {
    "autoformer-tiny": [
        ({"hidden_dim": 192, "depth": 14, "mlp_ratio": [3.5, 3.5, 3.5, 3.5, 4, 4, 4, 3.5, 4, 4, 4, 4, 3.5, 4],
          "num_heads": [4, 4, 4, 3, 4, 4, 3, 4, 3, 3, 3, 4, 4, 4]}, 6.937),
        ({"hidden_dim": 192, "depth": 14, "mlp_ratio": [3.5, 4, 4, 3.5, 3.5, 4, 4, 4, 4, 3.5, 3.5, 4, 3.5, 3.5],
          "num_heads": [4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 4, 4]}, 6.702664)],
    "autoformer-small": [
        ({"hidden_dim": 320, "depth": 13, "mlp_ratio": [4.0, 3.0, 3.5, 4.0, 3.0, 4.0, 3.5, 3.0, 3.0, 3.5, 3.5, 4.0, 3.5],
          "num_heads": [7, 6, 7, 7, 7, 5, 7, 6, 6, 7, 6, 7, 5]}, 16.904136)],
    "autoformer-base": [
        ({"hidden_dim": 576, "depth": 14, "mlp_ratio": [3.0, 3.0, 4.0, 4.0, 4.0, 3.0, 3.0, 4.0, 3.5, 3.5, 3.0, 3.0, 4.0, 3.5],
          "num_heads": [10, 10, 9, 10, 9, 10, 9, 9, 10, 9, 10, 9, 10, 9]}, 53.13844)],
}
CASES = [(s, a, m) for s, rows in RECORDED.items() for a, m in rows]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("space,arch,millions", CASES)
def test_built_model_has_the_recorded_parameter_count(space, arch, millions):
    sp = get_space(space)
    assert sp.num_params(arch, num_classes=1000) == round(millions * 1e6)
    assert count(sp.build(arch, num_classes=1000)) == round(millions * 1e6)


def test_vit_bench_autoformer_builds_another_model_from_the_same_arch():
    arch, millions = RECORDED["autoformer-tiny"][0]
    assert get_space("autoformer").num_params(arch, num_classes=1000) != round(millions * 1e6)


@pytest.mark.parametrize("space,bad", [
    ("autoformer-tiny", {"hidden_dim": 320}), ("autoformer-small", {"num_heads": [3] * 12}),
    ("autoformer-base", {"depth": 12, "mlp_ratio": [3.0] * 12, "num_heads": [9] * 12}),
    ("autoformer-tiny", {"mlp_ratio": [3.0] * 12})])
def test_choices_outside_the_space_are_refused(space, bad):
    base = {"autoformer-tiny": {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12},
            "autoformer-small": {"hidden_dim": 320, "depth": 12, "mlp_ratio": [3.0] * 12, "num_heads": [5] * 12},
            "autoformer-base": {"hidden_dim": 528, "depth": 14, "mlp_ratio": [3.0] * 14, "num_heads": [9] * 14}}[space]
    with pytest.raises(ArchError):
        get_space(space).validate({**base, **bad})


@pytest.mark.parametrize("space", sorted(RECORDED))
def test_sampling_and_variation_stay_in_the_space(space):
    sp, rng = get_space(space), random.Random(3)
    archs = [sp.sample(rng) for _ in range(20)]
    for a, b in zip(archs, archs[1:]):
        sp.validate(sp.mutate(a, rng, prob=0.5))
        sp.validate(sp.crossover(a, b, rng))
    assert {a["hidden_dim"] for a in archs} == set(sp.DIMS)


def test_relative_positions_index_rows_and_columns_with_cls_first():
    rel = RelativePosition2D()
    with torch.no_grad():
        rel.table_v.copy_(torch.arange(30.0)[:, None].expand(30, 64))
        rel.table_h.zero_()
    e = rel(1 + 9)[..., 0]  # a 3 x 3 grid plus cls
    assert e[0].tolist() == [0.0] * 10 and e[:, 0].tolist() == [0.0] * 10
    # token 1 is (row 0, col 0), token 9 is (row 2, col 2): row distance +2 -> 14 + 1 + 2
    assert e[1, 9].item() == 17.0 and e[9, 1].item() == 13.0 and e[2, 3].item() == 15.0


def test_attention_adds_the_relative_terms_to_keys_and_values():
    torch.manual_seed(0)
    att = RelPosAttention(dim=16, heads=2)
    x = torch.randn(2, 5, 16)
    b, n = 2, 5
    q, k, v = att.qkv(x).reshape(b, n, 3, 2, 64).permute(2, 0, 3, 1, 4)
    rk, rv = att.rel_k(n), att.rel_v(n)
    ref = torch.zeros(b, 2, n, 64)
    for i in range(n):  # per query: logits over keys with the key's relative embedding
        logits = (q[:, :, i:i + 1] @ (k + rk[i]).transpose(-2, -1)).squeeze(2) / 8.0
        p = logits.softmax(-1)
        ref[:, :, i] = (p.unsqueeze(-1) * (v + rv[i])).sum(2)
    want = att.proj(ref.transpose(1, 2).reshape(b, n, 128))
    assert torch.allclose(att(x), want, atol=1e-5)
