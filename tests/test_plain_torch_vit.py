"""A ViT written in plain torch on ``nn.TransformerEncoderLayer`` (so ``nn.MultiheadAttention``, which
applies its projections itself): its attention maps are read, its projections count as weight layers,
and the model's own outputs do not change while it is read."""
import math

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


class NoMaps(nn.Module):
    """Attention by torch's fused kernel: no module sees the maps."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 16, 16)
        self.qkv = nn.Linear(8, 24)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        return self.head(nn.functional.scaled_dot_product_attention(q, k, v).mean(1))


def test_a_statistic_the_model_cannot_give_is_one_line(tiny_batch):
    with pytest.raises(ValueError, match="no 'attention' statistic.*nn.MultiheadAttention modules") as e:
        autoprox.score(NoMaps(), tiny_batch.images, tiny_batch.labels, "agg_sum(sum(attention))")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no 'gelu_input_grad' statistic.*nn.GELU"):
        autoprox.score(NoMaps(), tiny_batch.images, tiny_batch.labels, "agg_sum(mean(gelu_input_grad))")
    assert autoprox.score(NoMaps(), tiny_batch.images, tiny_batch.labels, "snip") > 0  # what it can give still scores


class Attention(nn.Module):
    """timm's attention layout (fused_attn switch, attn_drop after the softmax), written here."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.fused_attn = heads, True
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            y = nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            y = self.attn_drop((q * (c // self.heads) ** -0.5 @ k.transpose(-2, -1)).softmax(-1)) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class TimmLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 16, 16)
        self.attn = Attention()
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.patch_embed(x).flatten(2).transpose(1, 2)).mean(1))


def test_timm_style_attention_maps_are_read_with_the_fused_kernel_restored(tiny_batch):
    torch.manual_seed(0)
    m = TimmLike()
    with torch.no_grad():
        fused = m(tiny_batch.images)
    rows = autoprox.score(m, tiny_batch.images, tiny_batch.labels, "agg_sum(sum(attention))")
    assert rows == pytest.approx(4 * 2 * 4, rel=1e-5)  # images x heads x rows (2 x 2 patches), each summing to 1
    assert m.attn.fused_attn is True
    torch.manual_seed(0)
    again = TimmLike()
    again.attn.fused_attn = False
    with torch.no_grad():
        assert torch.allclose(again(tiny_batch.images), fused, atol=1e-6)


def test_a_timm_vit_when_timm_is_installed(tiny_batch):
    """Real timm (the optional extra ``autoprox[timm]``); skipped where it is not installed."""
    timm = pytest.importorskip("timm")
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32)
    depth = len(m.blocks)
    kinds = [k for _, k in weight_layers(m)]
    assert kinds.count("attn_qkv") == kinds.count("attn_proj") == depth and kinds[0] == "patch"
    rows = autoprox.score(m, tiny_batch.images, tiny_batch.labels, "agg_sum(sum(attention))")
    assert rows == pytest.approx(depth * 4 * m.blocks[0].attn.num_heads * 5, rel=1e-4)  # 4 patches + cls
    fused = m.blocks[0].attn.fused_attn
    fresh = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32)
    assert autoprox.score(fresh, tiny_batch.images, tiny_batch.labels, "grasp") != 0  # double backward: unfused
    assert fresh.blocks[0].attn.fused_attn == fused
    for name in ("token_entropy", "meco", "apd", "swap", "zen", "snip", "zico", "dss", "naswot", "te_nas"):
        fresh = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32)
        assert math.isfinite(autoprox.score(fresh, tiny_batch.images, tiny_batch.labels, name)), name


def test_te_nas_names_the_module_to_use_on_multihead_attention(tiny_batch):
    """``nn.MultiheadAttention`` applies its projections itself: no per-image weight gradient from
    one backward, so the ntk pass stops with one line naming the module type to use."""
    with pytest.raises(ValueError, match=r"MultiheadAttention applies its weights itself.*nn\.Linear") as e:
        autoprox.score(_model(), tiny_batch.images, tiny_batch.labels, "te_nas")
    assert "\n" not in str(e.value)
