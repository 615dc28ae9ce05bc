"""Zen-score's statistic on a ViT (ZenNAS, Lin et al. 2021; the ViT port of the Auto-Prox code).

Torch only (exported Python files embed it). Registered as pass ``zen``, family ``zen_score``:
log of the mean over images of sum |f(x) - f(x + 0.01 eps)|, with f the head's input (the pooled,
normalised features), x and eps ~ N(0, 1) of the batch's shape, on a copy of the model whose
Linear/Conv2d weights are re-drawn N(0, 1) and biases set to 0 (LayerNorms and embeddings as built).
ZenNAS adds sum over BatchNorm layers of log sqrt(mean running variance); a ViT has none, so the
term is 0, as in the port. Train mode as in both codes; the two forwards run under the same seed, so
they draw the same DropPath masks (the port draws two, which adds noise to the difference).
"""
from __future__ import annotations

import copy
import math
from typing import Collection

import torch
from torch import nn

from autoprox.stats.collect import weight_layers  # torch-only; embedded before this file
from autoprox.stats.layers import seeded

MIXUP_GAMMA = 1e-2  # ZenNAS's perturbation scale


def gaussian_copy(model: nn.Module, g: torch.Generator) -> nn.Module:
    """A copy of ``model`` with every Linear/Conv2d weight N(0, 1) (drawn from ``g`` on the CPU), biases 0."""
    net = copy.deepcopy(model)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
                m.in_proj_weight.copy_(torch.randn(m.in_proj_weight.shape, generator=g))
                if m.in_proj_bias is not None:
                    m.in_proj_bias.zero_()
    return net


def head_input(net: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The input of the head layer (kind ``head``) on ``x``, forward seeded with ``seed``."""
    heads = [m for m, k in weight_layers(net) if k == "head"]
    if not heads:
        raise ValueError("Zen-score reads the head's input: the model has no layer of kind 'head'")
    seen: list[torch.Tensor] = []
    h = heads[-1].register_forward_pre_hook(lambda m, i: seen.append(i[0].detach()))
    try:
        with seeded(seed, x.device):
            net(x)
    finally:
        h.remove()
    return seen[-1].flatten(1)


def zen_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
             families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The ``zen`` pass; see the module doc. ``model`` itself is left untouched."""
    g = torch.Generator().manual_seed(seed)
    net = gaussian_copy(model, g)
    x = torch.randn(images.shape, generator=g).to(images.device)
    eps = torch.randn(images.shape, generator=g).to(images.device)
    net.train()
    with torch.no_grad():
        a = head_input(net, x, seed)
        b = head_input(net, x + MIXUP_GAMMA * eps, seed)
    delta = (a.double() - b.double()).abs().sum(1).mean()
    value = torch.tensor(math.log(float(delta)) if float(delta) > 0 else float("-inf"))
    return {"zen_score": [value.float()]}, {"zen_score": ["batch"]}, {}
