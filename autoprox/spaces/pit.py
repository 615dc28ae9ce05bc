"""PiT subnets, as the ViT-Bench-101 models were built (REFERENCE.md s.1)."""
from __future__ import annotations

import itertools
import random
from typing import Any, Mapping

import torch
from torch import nn

from autoprox.spaces.base import ArchError, SearchSpace, check_choice, check_keys, register_space
from autoprox.spaces.layers import Block, block_macs, block_params, init_vit_weights, tag

BASE_DIMS = (16, 24, 32, 40)
RATIOS = (2, 4, 6, 8)
DEPTHS = ((1, 6, 6), (1, 8, 4), (2, 4, 6), (2, 6, 4), (2, 6, 6),
          (2, 8, 2), (2, 8, 4), (3, 4, 6), (3, 6, 4), (3, 8, 2))
HEAD_CHOICES = (2, 4, 8)
# The depthwise pooling conv needs each stage's width to be a multiple of the last's.
HEADS = tuple(h for h in itertools.product(HEAD_CHOICES, repeat=3) if h[1] % h[0] == 0 and h[2] % h[1] == 0)
PATCH, STRIDE = 16, 8
FIELDS = ("base_dim", "mlp_ratio", "depth", "num_heads")


def grid_sizes(img_size: int) -> list[int]:
    """Token-grid side of each stage: (img-16)/8+1, then halved by stride-2 pooling."""
    if img_size < PATCH:
        raise ArchError(f"img_size {img_size} is smaller than the {PATCH}px patch")
    g = [(img_size - PATCH) // STRIDE + 1]
    for _ in range(2):
        g.append((g[-1] - 1) // 2 + 1)
    return g


class Pool(nn.Module):
    """Depthwise stride-2 conv on the token map plus a Linear on the cls token."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = tag(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, groups=c_in), "pool_conv")
        self.fc = tag(nn.Linear(c_in, c_out), "pool_fc")

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), self.fc(cls)


class PiT(nn.Module):
    def __init__(self, arch: dict, num_classes: int, img_size: int, drop_path: float) -> None:
        super().__init__()
        widths = [arch["base_dim"] * h for h in arch["num_heads"]]
        g = grid_sizes(img_size)[0]
        self.patch_embed = tag(nn.Conv2d(3, widths[0], PATCH, stride=STRIDE), "patch")
        self.pos_embed = nn.Parameter(torch.zeros(1, widths[0], g, g))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, widths[0]))
        total = sum(arch["depth"])
        rates = iter([drop_path * i / max(total - 1, 1) for i in range(total)])
        self.stages = nn.ModuleList(
            nn.ModuleList(Block(w, h, int(w * arch["mlp_ratio"]), next(rates), eps=1e-6)
                          for _ in range(d))
            for w, h, d in zip(widths, arch["num_heads"], arch["depth"]))
        self.pools = nn.ModuleList(Pool(widths[i], widths[i + 1]) for i in range(2))
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = tag(nn.Linear(widths[-1], num_classes), "head")
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        init_vit_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for s, blocks in enumerate(self.stages):
            b, c, h, w = x.shape
            t = torch.cat([cls, x.flatten(2).transpose(1, 2)], dim=1)
            for blk in blocks:
                t = blk(t)
            cls, x = t[:, :1], t[:, 1:].transpose(1, 2).reshape(b, c, h, w)
            if s < len(self.pools):
                x, cls = self.pools[s](x, cls)
        return self.head(self.norm(cls[:, 0]))


@register_space("pit")
class PiTSpace(SearchSpace):
    """base_dim, one mlp_ratio, and per-stage depth and num_heads triples."""

    def validate(self, arch: Mapping[str, Any]) -> dict:
        check_keys(arch, FIELDS, "pit")
        check_choice("base_dim", arch["base_dim"], BASE_DIMS)
        check_choice("mlp_ratio", arch["mlp_ratio"], RATIOS)
        for f, choices in (("depth", DEPTHS), ("num_heads", HEADS)):
            v = arch[f]
            if not isinstance(v, (list, tuple)) or len(v) != 3:
                raise ArchError(f"{f} must be a list of 3 values (one per stage), got {v!r}")
            check_choice(f, tuple(v), choices)
        return {"base_dim": int(arch["base_dim"]), "mlp_ratio": int(arch["mlp_ratio"]),
                "depth": [int(x) for x in arch["depth"]],
                "num_heads": [int(x) for x in arch["num_heads"]]}

    def sample(self, rng: random.Random) -> dict:
        return {"base_dim": rng.choice(BASE_DIMS), "mlp_ratio": rng.choice(RATIOS),
                "depth": list(rng.choice(DEPTHS)), "num_heads": list(rng.choice(HEADS))}

    def mutate(self, arch: Mapping[str, Any], rng: random.Random, prob: float = 0.3) -> dict:
        a = self.validate(arch)
        fresh = self.sample(rng)
        return {k: (fresh[k] if rng.random() < prob else v) for k, v in a.items()}

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: random.Random) -> dict:
        a, b = self.validate(a), self.validate(b)
        return {k: list(rng.choice((a[k], b[k]))) if isinstance(a[k], list) else rng.choice((a[k], b[k]))
                for k in FIELDS}

    def num_params(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224) -> int:
        a = self.validate(arch)
        w = [a["base_dim"] * h for h in a["num_heads"]]
        g = grid_sizes(img_size)[0]
        total = 3 * PATCH * PATCH * w[0] + w[0] + w[0] * g * g + w[0]  # patch, pos, cls
        for c, d in zip(w, a["depth"]):
            total += d * block_params(c, int(c * a["mlp_ratio"]))
        for c_in, c_out in zip(w, w[1:]):
            total += (9 * c_out + c_out) + (c_in * c_out + c_out)  # depthwise conv, cls fc
        return total + 2 * w[-1] + w[-1] * num_classes + num_classes

    def flops(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224) -> int:
        a = self.validate(arch)
        w = [a["base_dim"] * h for h in a["num_heads"]]
        g = grid_sizes(img_size)
        total = g[0] * g[0] * w[0] * 3 * PATCH * PATCH
        for c, d, side in zip(w, a["depth"], g):
            total += d * block_macs(c, int(c * a["mlp_ratio"]), side * side + 1)
        for i in range(2):
            total += g[i + 1] ** 2 * w[i + 1] * 9 + w[i] * w[i + 1]
        return total + w[-1] * num_classes

    def arch_scalars(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """depth: blocks over the 3 stages; width: the block-weighted mean of the stage widths
        base_dim * num_heads[s] (AutoFormer's hidden_dim is the same mean over its constant-width
        blocks); heads: block-weighted mean of num_heads; mlp_ratio: the one ratio."""
        a = self.validate(arch)
        n = sum(a["depth"])
        heads = sum(d * h for d, h in zip(a["depth"], a["num_heads"])) / n
        return {"depth": float(n), "width": float(a["base_dim"] * heads), "heads": float(heads),
                "mlp_ratio": float(a["mlp_ratio"])}

    torch_parts = ("PATCH", "STRIDE", grid_sizes, Pool, PiT)
    torch_call = "PiT(arch, num_classes, img_size, drop_path)"

    def _build(self, arch: dict, num_classes: int, img_size: int, drop_path: float) -> nn.Module:
        return PiT(arch, num_classes, img_size, drop_path)
