"""Forward-only feature statistics of the proxies published after 2023 (token entropy and minimum
eigenvalue, MeCo, APD, SWAP): one seeded eval-mode forward of the batch, no gradient.

Torch only, like ``collect``: exported Python files embed it. Every function here is one
statistic family; ``features_pass`` (registered as pass ``features``) runs the forward once and
computes the wanted families:

- ``token_entropy`` (per token-output weight layer): the layer's output for image 0 as a
  (tokens x width) matrix; each token's Shannon entropy of softmax over its width (nats); the
  u = 1 lowest, scaled by tokens / u: ``tokens * min_i H(x_i)``.
- ``token_min_eig`` (same layers): the tokens' Pearson correlation (tokens x tokens, NaN -> 0);
  the ``TOKEN_U`` tokens with the lowest summed |correlation|; the smallest eigenvalue of their
  correlation, scaled by tokens / u.
- ``meco`` (same layers): the smallest eigenvalue of the whole token correlation (MeCo's
  matrix for a (B, tokens, width) output: image 0, rows = tokens).
- ``norm_stable_rank`` (per LayerNorm): the output over the batch as a (B * tokens) x width matrix
  M; ||M||_F^2 / (||M||_2^2 + 1e-6).
- ``weight_l1_l2`` (per weight layer): mean over output units of sum|W_o|, over the mean of ||W_o||_2.
- ``swap_patterns`` (one per arch): the number of distinct sign patterns of the GELU units (each
  (token, unit) of every GELU's input is a neuron; its pattern: > 0 over every image of the batch,
  as SWAP's Transformer script scores its whole input batch; 16 images, its CNN default, leave
  2^16 possible patterns, which AutoFormer's millions of neurons nearly all show).

A token-output layer is a weight layer whose output is (B, tokens, width) with at least two tokens.
"""
from __future__ import annotations

from typing import Collection

import torch
from torch import nn

from autoprox.stats.collect import per_layer, weight_layers  # torch-only; embedded before this file
from autoprox.stats.layers import hook_owner, seeded

FEATURE_FAMILIES = ("token_entropy", "token_min_eig", "meco", "norm_stable_rank", "weight_l1_l2",
                    "swap_patterns")
TOKEN_U = 8        # tokens kept by token_min_eig (u = 1 leaves a 1 x 1 matrix: every layer would give tokens)


def token_entropy(x: torch.Tensor) -> torch.Tensor:
    """tokens * the smallest entropy of softmax over a token's features; ``x``: (tokens, width)."""
    x = x.double()
    h = -(x.softmax(-1) * x.log_softmax(-1)).sum(-1)
    return h.min() * x.shape[0]


def correlation(x: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the rows of ``x`` in float64, NaN and inf set to 0."""
    c = torch.corrcoef(x.double())
    return torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)


def token_min_eig(x: torch.Tensor, u: int = TOKEN_U) -> torch.Tensor:
    """Smallest eigenvalue of the correlation of the ``u`` least correlated tokens, times tokens / u."""
    c = correlation(x)
    t = c.shape[0]
    u = min(u, t)
    keep = torch.sort(c.abs().sum(1), stable=True).indices[:u]
    return torch.linalg.eigvalsh(c[keep][:, keep])[0] * (t / u)


def meco(x: torch.Tensor) -> torch.Tensor:
    """Smallest eigenvalue of the Pearson correlation of the rows (tokens) of ``x``."""
    return torch.linalg.eigvalsh(correlation(x))[0]


def stable_rank(x: torch.Tensor) -> torch.Tensor:
    """||M||_F^2 / (||M||_2^2 + 1e-6), M = ``x`` with its last dim as columns."""
    m = x.double().reshape(-1, x.shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T  # its top eigenvalue is ||M||_2^2: 1.6x an SVD
    return m.pow(2).sum() / (torch.linalg.eigvalsh(gram)[-1] + 1e-6)


def l1_l2_ratio(w: torch.Tensor) -> torch.Tensor:
    """mean over output units o of sum|W_o|, over the mean over o of ||W_o||_2."""
    w = w.detach().double().flatten(1)
    return w.abs().sum(1).mean() / w.norm(dim=1).mean()


def pack_codes(code: torch.Tensor) -> torch.Tensor:
    """(neurons x samples) bool -> (neurons x ceil(samples / 62)) int64, 62 bits per column (no sign
    bit), one sample at a time: no int64 copy of every bit (1.3 GB on an AutoFormer-Small arch)."""
    cols = []
    for lo in range(0, code.shape[1], 62):
        word = torch.zeros(code.shape[0], dtype=torch.int64, device=code.device)
        for i in range(lo, min(lo + 62, code.shape[1])):
            word |= code[:, i].to(torch.int64) << (i - lo)
        cols.append(word)
    return torch.stack(cols, 1)


def distinct_patterns(packed: list[torch.Tensor]) -> torch.Tensor:
    """Number of distinct rows among every layer's ``pack_codes``-ed (neurons x samples) sign codes."""
    if not packed:
        return torch.tensor(float("nan"))
    rows = torch.cat(packed)
    if rows.shape[1] == 1:
        return torch.tensor(float(torch.unique(rows[:, 0]).shape[0]))  # 1-D unique: ~60x faster than dim=0
    return torch.tensor(float(torch.unique(rows, dim=0).shape[0]))


def images_read(wants, batch: int) -> int:
    """How many leading images the wanted families read (eval mode: an image's features do not
    depend on the others, so the forward runs on those alone)."""
    return batch if wants("norm_stable_rank") or wants("swap_patterns") else 1


class _Taps:
    """Forward hooks keeping what the wanted families read, detached."""

    def __init__(self, model: nn.Module, wants) -> None:
        self.tokens: list[torch.Tensor] = []
        self.token_kinds: list[str] = []
        self.norms: list[torch.Tensor] = []
        self.codes: list[torch.Tensor] = []
        self.handles = []
        if any(wants(f) for f in ("token_entropy", "token_min_eig", "meco")):
            self.handles += [hook_owner(m).register_forward_hook(self._token_hook(k)) for m, k in weight_layers(model)]
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and wants("norm_stable_rank"):
                self.handles.append(m.register_forward_hook(self._norm_hook))
            elif isinstance(m, nn.GELU) and wants("swap_patterns"):
                self.handles.append(m.register_forward_hook(self._gelu_hook))

    def _token_hook(self, kind: str):
        def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[1] >= 2:
                self.tokens.append(out[0].detach())
                self.token_kinds.append(kind)
        return hook

    def _norm_hook(self, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        self.norms.append(stable_rank(out.detach()))

    def _gelu_hook(self, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        self.codes.append(pack_codes((inputs[0].detach() > 0).flatten(1).T))  # packed here: 8 bytes a neuron

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def features_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
                  families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The ``features`` pass: one seeded eval-mode forward without gradient; see the module doc."""
    def wants(f: str) -> bool:
        return families is None or f in families
    device = images.device
    taps = _Taps(model, wants)
    model.eval()
    try:
        with torch.no_grad(), seeded(seed, device):
            model(images[:images_read(wants, images.shape[0])])
    finally:
        taps.remove()
    tensors: dict[str, list[torch.Tensor]] = {}
    kinds: dict[str, list[str]] = {}
    per_token = {"token_entropy": token_entropy, "token_min_eig": token_min_eig, "meco": meco}
    for f, fn in per_token.items():
        if wants(f):
            tensors[f], kinds[f] = per_layer([fn(x) for x in taps.tokens]), list(taps.token_kinds)
    if wants("norm_stable_rank"):
        tensors["norm_stable_rank"] = per_layer(taps.norms)
        kinds["norm_stable_rank"] = ["norm"] * len(taps.norms)
    if wants("weight_l1_l2"):
        layers = weight_layers(model)
        tensors["weight_l1_l2"] = per_layer([l1_l2_ratio(m.weight) for m, _ in layers])
        kinds["weight_l1_l2"] = [k for _, k in layers]
    if wants("swap_patterns"):
        tensors["swap_patterns"], kinds["swap_patterns"] = per_layer([distinct_patterns(taps.codes)]), ["batch"]
    return tensors, kinds, {}
