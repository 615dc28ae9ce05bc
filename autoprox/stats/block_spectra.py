"""AZ-NAS's block statistics on a ViT (Lee & Ham, CVPR 2024; the AutoFormer version of the official code).

Torch only (exported Python files embed it). Registered as pass ``blocks``. The features are the
residual stream after each block's attention (the input of its ``norm2``) and after its MLP (the
block's output), in forward order: 2 x depth per arch, (B, tokens, width) each, read from modules
whose class is named ``Block``. Eval mode, the batch in ``grad_groups`` chunks (sums over images
are accumulated, so the values are the whole batch's):

- ``block_expressivity`` (per feature): tokens of every image as samples, covariance over the width;
  eigenvalues p normalised to sum 1; -sum p log(p + 1e-8);
- ``block_trainability`` (per consecutive pair of features of equal shape): g_out Rademacher of the
  later feature's shape, g_in = its vector-Jacobian product with the earlier one; sigma = the largest
  singular value of g_in^T g_out / (images x tokens) (width x width); -sigma - 1 / (sigma + 1e-6) + 2.
  A pair whose map is the identity (g_in == g_out) is skipped, as in the official code.

A NaN value becomes -inf, as in the official code.
"""
from __future__ import annotations

from typing import Collection

import torch
from torch import nn


def block_features(model: nn.Module, store: list[torch.Tensor]) -> list:
    """Hooks appending each block's post-attention and post-MLP residual stream to ``store``."""
    handles = []
    for m in model.modules():
        if type(m).__name__ == "Block" and isinstance(getattr(m, "norm2", None), nn.Module):
            handles.append(m.norm2.register_forward_pre_hook(lambda mod, i: store.append(i[0])))
            handles.append(m.register_forward_hook(lambda mod, i, o: store.append(o)))
    return handles


class Sums:
    """Running sums over images: per feature sum x and x^T x, per pair g_in^T g_out."""

    def __init__(self) -> None:
        self.n: list[int] = []
        self.s: list[torch.Tensor] = []
        self.ss: list[torch.Tensor] = []
        self.m: dict[int, torch.Tensor] = {}
        self.rows: dict[int, int] = {}

    def add_feature(self, i: int, f: torch.Tensor) -> None:
        x = f.detach().double().reshape(-1, f.shape[-1])
        if i == len(self.n):
            self.n.append(0)
            self.s.append(torch.zeros(x.shape[1], dtype=torch.float64, device=x.device))
            self.ss.append(torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device))
        self.n[i] += x.shape[0]
        self.s[i] += x.sum(0)
        self.ss[i] += x.T @ x

    def add_pair(self, i: int, g_in: torch.Tensor, g_out: torch.Tensor) -> None:
        a, b = g_in.double().reshape(-1, g_in.shape[-1]), g_out.double().reshape(-1, g_out.shape[-1])
        self.m[i] = self.m.get(i, 0) + a.T @ b
        self.rows[i] = self.rows.get(i, 0) + a.shape[0]


def expressivity(n: int, s: torch.Tensor, ss: torch.Tensor) -> torch.Tensor:
    mu = s / n
    lam = torch.linalg.eigvalsh(ss / n - torch.outer(mu, mu))
    p = lam / lam.sum()
    return _finite(-(p * torch.log(p + 1e-8)).sum())


def trainability(m: torch.Tensor, rows: int) -> torch.Tensor:
    sigma = torch.linalg.matrix_norm(m / rows, ord=2)
    return _finite(-sigma - 1 / (sigma + 1e-6) + 2)


def _finite(v: torch.Tensor) -> torch.Tensor:
    return torch.full_like(v, float("-inf")) if torch.isnan(v) else v


def blocks_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
                families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The ``blocks`` pass; see the module doc."""
    device = images.device
    g = torch.Generator().manual_seed(seed)
    sums, identity = Sums(), set()
    model.eval()
    for idx in torch.arange(images.shape[0]).tensor_split(min(settings["grad_groups"], images.shape[0])):
        feats: list[torch.Tensor] = []
        handles = block_features(model, feats)
        try:
            model(images[idx.to(device)])
        finally:
            for h in handles:
                h.remove()
        for i, f in enumerate(feats):
            sums.add_feature(i, f)
        for i in range(len(feats) - 1, 0, -1):
            if feats[i].shape != feats[i - 1].shape or i in identity:
                continue
            r = (torch.randint(0, 2, feats[i].shape, generator=g).to(device, feats[i].dtype) * 2 - 1)
            (g_in,) = torch.autograd.grad(feats[i], feats[i - 1], r, retain_graph=True)
            if torch.equal(g_in, r):
                identity.add(i)
                continue
            sums.add_pair(i, g_in.detach(), r)
        model.zero_grad(set_to_none=True)
    expr = [expressivity(n, s, ss).float().cpu() for n, s, ss in zip(sums.n, sums.s, sums.ss)]
    train = [trainability(sums.m[i], sums.rows[i]).float().cpu() for i in sorted(sums.m) if i not in identity]
    return ({"block_expressivity": expr, "block_trainability": train},
            {"block_expressivity": ["block"] * len(expr), "block_trainability": ["block"] * len(train)}, {})
