"""AutoFormer's supernet search spaces (Chen et al., ICCV 2021), Tiny, Small and Base: the
subnets OoD-ViT-NAS labels, built as AutoFormer builds them (REFERENCE.md; AutoFormer's
``supernet_transformer.py`` with ``--gp --change_qkv --relative_position``).

What differs from ViT-Bench-101's ``autoformer`` space: each layer's attention works at
``num_heads x 64`` (not hidden_dim), queries are scaled by 64 ** -0.5, keys and values add
2-D relative position embeddings (two tables of (2 x 14 + 2) x 64 each, one per axis; index 0
is the cls token's), and LayerNorms use eps 1e-5. The classifier reads the mean of the patch
tokens, as in the other spaces.
"""
from __future__ import annotations

import torch
from torch import nn

from autoprox.spaces.autoformer import PATCH, AutoFormerViT, LayerwiseSpace
from autoprox.spaces.base import ArchError, register_space
from autoprox.spaces.layers import AttentionMap, DropPath, Mlp, tag

HEAD_DIM = 64      # AutoFormer's per-head width under change_qkv
MAX_REL = 14       # max_relative_position
TABLE_ROWS = 2 * MAX_REL + 2


class RelativePosition2D(nn.Module):
    """Row and column tables; ``forward(n)`` -> (n, n, 64) embeddings of n tokens (cls first)."""

    def __init__(self) -> None:
        super().__init__()
        self.table_v = nn.Parameter(torch.zeros(TABLE_ROWS, HEAD_DIM))
        self.table_h = nn.Parameter(torch.zeros(TABLE_ROWS, HEAD_DIM))
        nn.init.trunc_normal_(self.table_v, std=0.02)
        nn.init.trunc_normal_(self.table_h, std=0.02)
        self._index: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def index(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column table indices of every (query, key) pair of n tokens, computed once per n."""
        key = (n, self.table_v.device)
        if key not in self._index:
            side = int((n - 1) ** 0.5)
            pos = torch.arange(n - 1, device=self.table_v.device)
            rows, cols = pos // side, pos % side
            idx_v = (rows[None, :] - rows[:, None]).clamp(-MAX_REL, MAX_REL) + MAX_REL + 1
            idx_h = (cols[None, :] - cols[:, None]).clamp(-MAX_REL, MAX_REL) + MAX_REL + 1
            # row and column 0: the cls token, table row 0
            self._index[key] = (nn.functional.pad(idx_v, (1, 0, 1, 0)), nn.functional.pad(idx_h, (1, 0, 1, 0)))
        return self._index[key]

    def forward(self, n: int) -> torch.Tensor:
        """The (n, n, 64) embeddings, as AutoFormer materialises them (``RelPosAttention`` does not)."""
        idx_v, idx_h = self.index(n)
        return self.table_v[idx_v] + self.table_h[idx_h]

    def logits(self, q: torch.Tensor) -> torch.Tensor:
        """q_i . e(i, j) for queries (..., n, 64): each query against the table rows, then picked per key."""
        idx_v, idx_h = self.index(q.shape[-2])
        shape = q.shape[:-1] + (q.shape[-2],)
        return ((q @ self.table_v.T).gather(-1, idx_v.expand(shape))
                + (q @ self.table_h.T).gather(-1, idx_h.expand(shape)))

    def mix(self, attn: torch.Tensor) -> torch.Tensor:
        """sum_j attn_ij e(i, j): the attention summed per table row, then times the table."""
        idx_v, idx_h = self.index(attn.shape[-1])
        zero = attn.new_zeros(attn.shape[:-1] + (TABLE_ROWS,))
        return (zero.scatter_add(-1, idx_v.expand(attn.shape), attn) @ self.table_v
                + zero.scatter_add(-1, idx_h.expand(attn.shape), attn) @ self.table_h)


class RelPosAttention(nn.Module):
    """Multi-head attention at heads x 64 with relative position terms on keys and values."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.width = heads, heads * HEAD_DIM
        self.scale = HEAD_DIM ** -0.5
        self.qkv = tag(nn.Linear(dim, 3 * self.width), "attn_qkv")
        self.proj = tag(nn.Linear(self.width, dim), "attn_proj")
        self.rel_k = RelativePosition2D()
        self.rel_v = RelativePosition2D()
        self.attn_map = AttentionMap()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, HEAD_DIM).permute(2, 0, 3, 1, 4)
        q = q.contiguous()  # one copy, saved once for the three products that read it
        logits = (q @ k.transpose(-2, -1) + self.rel_k.logits(q)) * self.scale
        attn = self.attn_map(logits.softmax(dim=-1))
        out = attn @ v + self.rel_v.mix(attn)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.width))


class Block(nn.Module):
    """A pre-norm block; named `Block`, as every transformer block here and in timm is (the
    teacher and depth read blocks by that name)."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RelPosAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def supernet_block_params(dim: int, heads: int, hidden: int) -> int:
    """Two LayerNorms, qkv and proj at heads x 64, four relative-position tables, fc1, fc2."""
    a = heads * HEAD_DIM
    return (4 * dim + (dim * 3 * a + 3 * a) + (a * dim + dim) + 4 * TABLE_ROWS * HEAD_DIM
            + (dim * hidden + hidden) + (hidden * dim + dim))


def supernet_block_macs(dim: int, heads: int, hidden: int, tokens: int) -> int:
    """Linear layers, QK^T and attn @ V, and the two relative-position products, on ``tokens``."""
    a = heads * HEAD_DIM
    return tokens * (3 * dim * a + a * dim + 2 * dim * hidden) + 4 * tokens * tokens * a


class SupernetSpace(LayerwiseSpace):
    """One of AutoFormer's supernet spaces; subclasses set the choices."""

    def block_params(self, dim: int, heads: int, hidden: int) -> int:
        return supernet_block_params(dim, heads, hidden)

    def block_macs(self, dim: int, heads: int, hidden: int, tokens: int) -> int:
        return supernet_block_macs(dim, heads, hidden, tokens)

    torch_parts = ("PATCH", "HEAD_DIM", "MAX_REL", "TABLE_ROWS", RelativePosition2D, RelPosAttention, Block,
                   AutoFormerViT)  # this Block replaces layers.Block in the file; it is passed as make_block
    torch_call = "AutoFormerViT(arch, num_classes, img_size, drop_path, make_block=Block, eps=1e-5)"

    def _build(self, arch: dict, num_classes: int, img_size: int, drop_path: float) -> nn.Module:
        if img_size < PATCH:
            raise ArchError(f"img_size {img_size} is smaller than the {PATCH}px patch")
        return AutoFormerViT(arch, num_classes, img_size, drop_path, make_block=Block, eps=1e-5)


@register_space("autoformer-tiny")
class AutoFormerTiny(SupernetSpace):
    """AutoFormer-T's supernet: embed 192/216/240, depth 12-14, mlp 3.5/4, heads 3/4."""
    DIMS, DEPTHS, RATIOS, HEADS = (192, 216, 240), (12, 13, 14), (3.5, 4.0), (3, 4)


@register_space("autoformer-small")
class AutoFormerSmall(SupernetSpace):
    """AutoFormer-S's supernet: embed 320/384/448, depth 12-14, mlp 3/3.5/4, heads 5/6/7."""
    DIMS, DEPTHS, RATIOS, HEADS = (320, 384, 448), (12, 13, 14), (3.0, 3.5, 4.0), (5, 6, 7)


@register_space("autoformer-base")
class AutoFormerBase(SupernetSpace):
    """AutoFormer-B's supernet: embed 528/576/624, depth 14-16, mlp 3/3.5/4, heads 9/10."""
    DIMS, DEPTHS, RATIOS, HEADS = (528, 576, 624), (14, 15, 16), (3.0, 3.5, 4.0), (9, 10)
