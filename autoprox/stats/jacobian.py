"""The input-Jacobian statistics: jacob_cov's correlation matrix and EPE-NAS's score.

Torch only (exported Python files embed it); registered as pass ``jacobian``. One seeded
train-mode forward of the batch; J = d sum(logits) / d image, one flattened row per image.
"""
from __future__ import annotations

from typing import Collection

import torch
from torch import nn

from autoprox.stats.layers import seeded  # torch only; embedded before this file

EPE_K = 1e-5  # EPE-NAS's offset inside the log


def epe_nas(jac: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """EPE-NAS (Lopes et al. 2021): per class c, E_c = sum log(|corr(J_c)| + 1e-5) over the images of
    class c (one image: corr = 1); up to 100 classes: sum |E_c|; more: E_c / n_c, then the mean over
    classes present of sum over c' |E_c - E_c'| (the official code's two branches, with the class
    count = the logits' width, as NASLib's port passes it)."""
    j = jac.flatten(1).double()
    scores = []
    for c in torch.unique(labels, sorted=True):
        rows = j[labels == c]
        corr = torch.corrcoef(rows) if rows.shape[0] > 1 else torch.ones(1, 1, dtype=torch.float64)
        e = torch.log(corr.abs() + EPE_K).sum()
        scores.append(e / rows.shape[0] if n_classes > 100 else e)
    e = torch.stack(scores)
    if n_classes <= 100:
        return e.abs().sum()
    return (e[:, None] - e[None, :]).abs().sum() / len(scores)


def input_jacobian(model: nn.Module, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, J): one seeded train-mode forward of the batch, then J = d sum(logits) / d image (no
    parameter's ``.grad`` is touched). Hooks on ``model`` see this forward and its backward."""
    x = images.detach().clone().requires_grad_(True)
    model.train()
    with seeded(seed, images.device):
        logits = model(x)
    (jac,) = torch.autograd.grad(logits.sum(), x)  # inputs=x only
    return logits.detach(), jac.detach()


def jacobian_stats(logits: torch.Tensor, jac: torch.Tensor, labels: torch.Tensor) -> tuple[dict, dict, dict]:
    """``logit_jacobian_corr``: the (B x B) correlation matrix of J's rows (jacob_cov, Mellor et al.
    2021); ``epe_nas``: EPE-NAS's score from J and the labels."""
    epe = epe_nas(jac.cpu(), labels.cpu(), logits.shape[-1])
    return ({"logit_jacobian_corr": [torch.corrcoef(jac.flatten(1)).float().cpu()], "epe_nas": [epe.float()]},
            {"logit_jacobian_corr": ["batch"], "epe_nas": ["batch"]}, {})


def jacobian_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
                  families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The ``jacobian`` pass: ``jacobian_stats`` of ``input_jacobian``."""
    return jacobian_stats(*input_jacobian(model, images, seed), labels)
