"""ViT building blocks shared by the search spaces.

Every Linear/Conv2d that statistics should see is tagged with a *kind*
(``tag``); the attention probabilities pass through ``AttentionMap`` so that a
hook can read them and their gradient.
"""
from __future__ import annotations

import torch
from torch import nn

KIND_ATTR = "autoprox_kind"  # the attribute statistics read a weight layer's kind from
# Kinds of weight layers, in the vocabulary that aggregations use.
KINDS = ("patch", "attn_qkv", "attn_proj", "mlp_fc1", "mlp_fc2", "pool_conv", "pool_fc", "head")


def tag(module: nn.Module, kind: str) -> nn.Module:
    """Mark ``module`` with its layer kind (one of ``KINDS``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}")
    setattr(module, KIND_ATTR, kind)
    return module


class AttentionMap(nn.Identity):
    """Identity on softmax(QK^T); exists so hooks can find attention maps."""


class DropPath(nn.Module):
    """Stochastic depth per sample (train mode only)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = tag(nn.Linear(dim, 3 * dim), "attn_qkv")
        self.proj = tag(nn.Linear(dim, dim), "attn_proj")
        self.attn_map = AttentionMap()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.attn_map(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = tag(nn.Linear(dim, hidden), "mlp_fc1")
        self.act = nn.GELU()
        self.fc2 = tag(nn.Linear(hidden, dim), "mlp_fc2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, drop_path: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def block_params(dim: int, hidden: int) -> int:
    """Parameters of one ``Block``: two LayerNorms, qkv, proj, fc1, fc2."""
    return 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * hidden + hidden) + (hidden * dim + dim)


def block_macs(dim: int, hidden: int, tokens: int) -> int:
    """Multiply-accumulates of one ``Block`` on ``tokens`` tokens."""
    linear = tokens * (3 * dim * dim + dim * dim + 2 * dim * hidden)
    return linear + 2 * tokens * tokens * dim  # QK^T and attn @ V


def init_vit_weights(model: nn.Module) -> None:
    """trunc-normal(0.02) Linear weights, zero biases, LayerNorm w=1 b=0.

    Draws from torch's default generator: callers seed it inside ``fork_rng``.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
