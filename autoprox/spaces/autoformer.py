"""AutoFormer-Ti subnets, as the ViT-Bench-101 models were built (REFERENCE.md s.1)."""
from __future__ import annotations

import random
from typing import Any, Callable, Mapping

import torch
from torch import nn

from autoprox.spaces.base import ArchError, SearchSpace, check_choice, check_keys, register_space
from autoprox.spaces.layers import Block, block_macs, block_params, init_vit_weights, tag

DIMS = (192, 216, 240)
DEPTHS = (12, 13, 14)
RATIOS = (3.5, 4.0)
HEADS = (3, 4)
PATCH = 16
FIELDS = ("hidden_dim", "depth", "mlp_ratio", "num_heads")


class AutoFormerViT(nn.Module):
    """Patch embedding, cls token and absolute positions, ``depth`` blocks made by ``make_block(width,
    heads, mlp hidden, drop-path rate)`` (default: ``layers.Block`` with LayerNorm ``eps``), a final
    LayerNorm and a head on the mean of the patch tokens."""

    def __init__(self, arch: dict, num_classes: int, img_size: int, drop_path: float,
                 make_block: Callable[[int, int, int, float], nn.Module] | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        d, depth = arch["hidden_dim"], arch["depth"]
        n = (img_size // PATCH) ** 2
        self.patch_embed = tag(nn.Conv2d(3, d, kernel_size=PATCH, stride=PATCH), "patch")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, d))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        make = make_block or (lambda dim, heads, hidden, rate: Block(dim, heads, hidden, rate, eps=eps))
        self.blocks = nn.ModuleList(
            make(d, arch["num_heads"][i], int(d * arch["mlp_ratio"][i]), rates[i]) for i in range(depth))
        self.norm = nn.LayerNorm(d, eps=eps)
        self.head = tag(nn.Linear(d, num_classes), "head")
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        init_vit_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.head(x[:, 1:].mean(dim=1))


class LayerwiseSpace(SearchSpace):
    """hidden_dim, depth, and per-layer mlp_ratio and num_heads lists: AutoFormer's arch
    encoding, shared by ViT-Bench-101's variant and AutoFormer's supernet spaces; a subclass
    sets the choices and builds the model."""

    DIMS: tuple[int, ...] = DIMS
    DEPTHS: tuple[int, ...] = DEPTHS
    RATIOS: tuple[float, ...] = RATIOS
    HEADS: tuple[int, ...] = HEADS

    def choices(self) -> dict[str, tuple]:
        """Each field's choices (per layer for mlp_ratio and num_heads)."""
        return {"hidden_dim": self.DIMS, "depth": self.DEPTHS, "mlp_ratio": self.RATIOS, "num_heads": self.HEADS}

    def validate(self, arch: Mapping[str, Any]) -> dict:
        check_keys(arch, FIELDS, self.name)
        check_choice("hidden_dim", arch["hidden_dim"], self.DIMS)
        check_choice("depth", arch["depth"], self.DEPTHS)
        depth = arch["depth"]
        for f, choices in (("mlp_ratio", self.RATIOS), ("num_heads", self.HEADS)):
            v = arch[f]
            if not isinstance(v, (list, tuple)) or len(v) != depth:
                raise ArchError(f"{f} must be a list of {depth} values (one per layer), got {v!r}")
            for i, x in enumerate(v):
                check_choice(f"{f}[{i}]", x, choices)
        return {"hidden_dim": int(arch["hidden_dim"]), "depth": int(depth),
                "mlp_ratio": [float(r) for r in arch["mlp_ratio"]],
                "num_heads": [int(h) for h in arch["num_heads"]]}

    def sample(self, rng: random.Random) -> dict:
        depth = rng.choice(self.DEPTHS)
        return {"hidden_dim": rng.choice(self.DIMS), "depth": depth,
                "mlp_ratio": [rng.choice(self.RATIOS) for _ in range(depth)],
                "num_heads": [rng.choice(self.HEADS) for _ in range(depth)]}

    def mutate(self, arch: Mapping[str, Any], rng: random.Random, prob: float = 0.3) -> dict:
        a = self.validate(arch)
        if rng.random() < prob:
            a["hidden_dim"] = rng.choice(self.DIMS)
        if rng.random() < prob:
            a["depth"] = rng.choice(self.DEPTHS)
        for f, choices in (("mlp_ratio", self.RATIOS), ("num_heads", self.HEADS)):
            genes = a[f][: a["depth"]] + [rng.choice(choices) for _ in range(a["depth"] - len(a[f]))]
            a[f] = [rng.choice(choices) if rng.random() < prob else g for g in genes]
        return a

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: random.Random) -> dict:
        a, b = self.validate(a), self.validate(b)
        depth = rng.choice((a["depth"], b["depth"]))
        child = {"hidden_dim": rng.choice((a["hidden_dim"], b["hidden_dim"])), "depth": depth}
        for f in ("mlp_ratio", "num_heads"):
            child[f] = [rng.choice([p[f][i] for p in (a, b) if i < p["depth"]]) for i in range(depth)]
        return child

    def block_params(self, dim: int, heads: int, hidden: int) -> int:
        """Parameters of one block."""
        return block_params(dim, hidden)

    def block_macs(self, dim: int, heads: int, hidden: int, tokens: int) -> int:
        """Multiply-accumulates of one block on ``tokens`` tokens."""
        return block_macs(dim, hidden, tokens)

    def num_params(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224) -> int:
        a = self.validate(arch)
        d = a["hidden_dim"]
        tokens = (img_size // PATCH) ** 2 + 1
        total = 3 * PATCH * PATCH * d + d + d + tokens * d  # patch conv, cls, pos
        total += sum(self.block_params(d, h, int(d * r)) for h, r in zip(a["num_heads"], a["mlp_ratio"]))
        return total + 2 * d + d * num_classes + num_classes  # final norm, head

    def flops(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224) -> int:
        a = self.validate(arch)
        d = a["hidden_dim"]
        n = (img_size // PATCH) ** 2
        total = n * d * 3 * PATCH * PATCH
        total += sum(self.block_macs(d, h, int(d * r), n + 1) for h, r in zip(a["num_heads"], a["mlp_ratio"]))
        return total + d * num_classes

    torch_parts = ("PATCH", AutoFormerViT)
    torch_call = "AutoFormerViT(arch, num_classes, img_size, drop_path)"

    def _build(self, arch: dict, num_classes: int, img_size: int, drop_path: float) -> nn.Module:
        if img_size < PATCH:
            raise ArchError(f"img_size {img_size} is smaller than the {PATCH}px patch")
        return AutoFormerViT(arch, num_classes, img_size, drop_path)

    def arch_scalars(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """Every block works at ``hidden_dim``: width is hidden_dim; heads and mlp_ratio are per-layer means."""
        a = self.validate(arch)
        return {"depth": float(a["depth"]), "width": float(a["hidden_dim"]),
                "heads": sum(a["num_heads"]) / a["depth"], "mlp_ratio": sum(a["mlp_ratio"]) / a["depth"]}


@register_space("autoformer")
class AutoFormerSpace(LayerwiseSpace):
    """ViT-Bench-101's AutoFormer-Ti variant: attention width = hidden_dim, mean-pooled head."""
