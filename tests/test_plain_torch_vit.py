"""A ViT written in plain torch on ``nn.TransformerEncoderLayer`` (so ``nn.MultiheadAttention``, which
applies its projections itself): its attention maps are read, its projections count as weight layers,
and the model's own outputs do not change while it is read."""
import pytest
import torch
from torch import nn

import autoprox
from autoprox.stats.layers import weight_layers


class PlainViT(nn.Module):
    def __init__(self, dim: int = 16, depth: int = 2, heads: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, 16)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation=nn.GELU(), batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(t).mean(1))


def _model() -> PlainViT:
    torch.manual_seed(0)
    return PlainViT()


def test_projections_of_multihead_attention_are_weight_layers():
    m = _model()
    kinds = [k for _, k in weight_layers(m)]
    assert kinds == ["patch"] + ["attn_qkv", "attn_proj", "other", "other"] * 2 + ["head"]
    enc = m.blocks.layers[0]
    assert weight_layers(m)[1][0].weight is enc.self_attn.in_proj_weight
    assert weight_layers(m)[2][0].weight is enc.self_attn.out_proj.weight


def test_attention_maps_are_read_and_outputs_unchanged(tiny_batch):
    images, labels = tiny_batch.images, tiny_batch.labels
    m = _model()
    with torch.no_grad():
        want = m.eval()(images)
    rows = autoprox.score(m, images, labels, "agg_sum(sum(attention))")  # each map row sums to 1
    samples, tokens = 4, 4  # act_samples default 4 (the batch), 2 x 2 patches and no cls token (<= 8 kept)
    assert rows == pytest.approx(2 * samples * 2 * tokens, rel=1e-5)  # 2 layers x images x heads x rows
    m2 = _model()
    with torch.no_grad():
        assert torch.allclose(m2.eval()(images), want)


def test_snip_counts_the_attention_projections(tiny_batch):
    images, labels = tiny_batch.images, tiny_batch.labels
    m = _model()
    got = autoprox.score(m, images, labels, "agg_sum_attn(snip_saliency)")
    ref = _model().train()
    torch.manual_seed(0)
    nn.functional.cross_entropy(ref(images), labels).backward()
    want = sum(float((p.detach() * p.grad).abs().sum()) for enc in ref.blocks.layers
               for p in (enc.self_attn.in_proj_weight, enc.self_attn.out_proj.weight))
    assert got == pytest.approx(want, rel=1e-4)
