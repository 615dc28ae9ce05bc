"""TE-NAS's trainability statistic: the empirical NTK of the batch, per weight layer and whole.

Torch only (exported Python files embed it); registered as pass ``ntk``. TE-NAS (Chen, Gong & Wang,
ICLR 2021; VITA-Group/TENAS ``get_ntk_n``) backpropagates each image's summed logits on its own and
takes the Gram matrix of those per-image gradients over the weights: NTK[n, m] = <g_n, g_m>; its
score is the condition number lambda_max / lambda_min (lower is more trainable). Train mode, as
TE-NAS's search calls it.

Here one seeded train-mode forward and one backward of sum(logits) give every image's gradient at
once: a ViT mixes no information across images (LayerNorm is per token, DropPath masks are drawn
for the batch before the backward), so a weight layer's per-image gradient is
sum over positions of (its output's gradient) x (its input) for that image alone. ``ntk_gram``
holds each weight layer's (B x B) Gram; ``ntk_cond`` the condition number of their sum.
Deliberate differences from the official code: the weights are the Linear/Conv2d weight layers,
not every parameter named ``weight`` (LayerNorm scales are left out), and the NTK is taken once,
not averaged over three re-initialisations.
"""
from __future__ import annotations

from typing import Collection

import torch
from torch import nn

from autoprox.stats.jacobian import input_jacobian, jacobian_stats  # torch only; embedded before this file
from autoprox.stats.layers import hook_owner, weight_layers


class _GradTaps:
    """Each weight layer's (B x B) Gram of per-image gradients, formed in the backward as soon as
    the layer's output gradient arrives (its input is then dropped: nothing waits for the end)."""

    def __init__(self, layers: list[object]) -> None:
        self.inputs: dict[int, torch.Tensor] = {}
        self.grams: dict[int, torch.Tensor] = {}
        self.handles = []
        for i, layer in enumerate(layers):
            m = hook_owner(layer)
            if m is not layer or not isinstance(m, (nn.Linear, nn.Conv2d)):
                raise ValueError("the ntk pass reads per-image gradients of nn.Linear/nn.Conv2d weight layers; "
                                 f"{type(m).__name__} applies its weights itself: build the model with nn.Linear "
                                 f"projections (as timm's ViT does) to score it")
            self.handles.append(m.register_forward_hook(self._keep(i)))

    def _keep(self, i: int):
        def hook(m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.inputs[i] = inputs[0].detach()
            output.register_hook(lambda g: self._gram(i, m, g))
        return hook

    def _gram(self, i: int, m: nn.Module, g: torch.Tensor) -> None:
        j = per_image_grads(m, self.inputs.pop(i), g.detach()).double()
        self.grams[i] = j @ j.T

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def per_image_grads(m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(B, weight numel) gradient of each image's summed logits w.r.t. ``m.weight`` (float32, as the
    model computes)."""
    if isinstance(m, nn.Linear):
        return torch.einsum("bto,bti->boi", g.reshape(g.shape[0], -1, g.shape[-1]),
                            x.reshape(x.shape[0], -1, x.shape[-1])).flatten(1)
    rows = [torch.nn.grad.conv2d_weight(x[b:b + 1], m.weight.shape, g[b:b + 1], m.stride, m.padding, m.dilation,
                                        m.groups).flatten() for b in range(x.shape[0])]
    return torch.stack(rows)


def condition_number(gram: torch.Tensor) -> torch.Tensor:
    """lambda_max / lambda_min of a symmetric matrix (float64)."""
    ev = torch.linalg.eigvalsh(gram.double())
    return ev[-1] / ev[0]


def ntk_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
             families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The ``ntk`` pass; see the module doc. No parameter's ``.grad`` is touched."""
    return _ntk(model, images, labels, seed, jacobian=False)


def jacobian_ntk_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
                      families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The ``jacobian`` and ``ntk`` passes on one forward and backward: both run the same seeded
    train-mode forward and back-propagate sum(logits) to the image, so the values are each pass's own."""
    return _ntk(model, images, labels, seed, jacobian=True)


def _ntk(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int,
         jacobian: bool) -> tuple[dict, dict, dict]:
    pairs = weight_layers(model)
    taps = _GradTaps([layer for layer, _ in pairs])
    try:  # the backward runs to the image: every layer on the way
        logits, jac = input_jacobian(model, images, seed)
    finally:
        taps.remove()
    grams = [taps.grams[i] for i in range(len(pairs))]
    total = torch.stack(grams).sum(0)
    tensors = {"ntk_gram": [gm.float().cpu() for gm in grams], "ntk_cond": [condition_number(total).float().cpu()]}
    kinds = {"ntk_gram": [k for _, k in pairs], "ntk_cond": ["batch"]}
    if jacobian:
        more, more_kinds, _ = jacobian_stats(logits, jac, labels)
        tensors.update(more)
        kinds.update(more_kinds)
    return tensors, kinds, {}
