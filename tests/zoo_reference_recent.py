"""Independent references of the zoo's recent proxies (2023-2025), written from the papers and the
official code; conventions as in ``zoo_reference`` (nothing from ``autoprox.stats`` or
``autoprox.proxy``; the model from ``get_space(space).build``). Linear algebra in numpy float64.

Each engine convention they follow is the documented one: token features are the outputs of the
qkv, attention-projection, fc1 and fc2 Linear modules (found here by attribute name), image 0, eval
mode; norm outputs and GELU signs come from one eval-mode forward of the batch; EPE-NAS's Jacobian
from one seeded train-mode forward; AZ-NAS's trainability draws its Rademacher vectors per chunk of
the batch, later feature first.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from autoprox.spaces import get_space
from zoo_reference import GROUPS, NUM_CLASSES, build, chunks, seeded

TOKEN_LINEARS = ("qkv", "proj", "fc1", "fc2")


def _token_outputs(space, arch, images, seed, names=TOKEN_LINEARS) -> list[np.ndarray]:
    """(tokens x width) output of image 0 of every Linear attribute named in ``names``, forward order."""
    model = build(space, arch, seed).eval()
    outs, handles = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.split(".")[-1] in names:
            handles.append(m.register_forward_hook(
                lambda m, i, o: outs.append(o[0].double().numpy()) if o.dim() == 3 and o.shape[1] > 1 else None))
    with torch.no_grad():
        model(images[:1])
    for h in handles:
        h.remove()
    return outs


def _entropy_rows(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1)


def _corr(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(x)
    return np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)


def token_entropy(space, arch, images, labels, seed, samples, tokens):
    """sum over layers of tokens x min over tokens of H(softmax(token))."""
    return float(sum(x.shape[0] * _entropy_rows(x).min() for x in _token_outputs(space, arch, images, seed)))


def token_entropy_mlp(space, arch, images, labels, seed, samples, tokens):
    mlp = _token_outputs(space, arch, images, seed, names=("fc1", "fc2"))
    return float(sum(x.shape[0] * _entropy_rows(x).min() for x in mlp))


def token_min_eig(space, arch, images, labels, seed, samples, tokens, u=8):
    total = 0.0
    for x in _token_outputs(space, arch, images, seed):
        c = _corr(x)
        k = min(u, c.shape[0])
        keep = np.argsort(np.abs(c).sum(axis=1), kind="stable")[:k]
        total += np.linalg.eigvalsh(c[np.ix_(keep, keep)]).min() * c.shape[0] / k
    return float(total)


def meco(space, arch, images, labels, seed, samples, tokens):
    return float(sum(np.linalg.eigvalsh(_corr(x)).min() for x in _token_outputs(space, arch, images, seed)))


def apd(space, arch, images, labels, seed, samples, tokens):
    """(sum over LayerNorms of ||M||_F^2 / (sigma_max(M)^2 + 1e-6)) x (sum over Linear/Conv2d of
    mean_o ||W_o||_1 / mean_o ||W_o||_2)."""
    model = build(space, arch, seed).eval()
    norms = []
    hs = [m.register_forward_hook(lambda m, i, o: norms.append(o.double().reshape(-1, o.shape[-1]).numpy()))
          for m in model.modules() if isinstance(m, nn.LayerNorm)]
    with torch.no_grad():
        model(images)
    for h in hs:
        h.remove()
    ranks = sum((m ** 2).sum() / (np.linalg.svd(m, compute_uv=False)[0] ** 2 + 1e-6) for m in norms)
    ratio = 0.0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach().double().reshape(m.weight.shape[0], -1).numpy()
            ratio += np.abs(w).sum(axis=1).mean() / np.sqrt((w ** 2).sum(axis=1)).mean()
    return float(ranks * ratio)


def swap(space, arch, images, labels, seed, samples, tokens):
    """Distinct sign patterns over every image of the batch of every GELU unit (token x channel)."""
    model = build(space, arch, seed).eval()
    codes = []
    hs = [m.register_forward_hook(lambda m, i, o: codes.append((i[0] > 0).reshape(i[0].shape[0], -1)))
          for m in model.modules() if isinstance(m, nn.GELU)]
    with torch.no_grad():
        model(images)
    for h in hs:
        h.remove()
    rows = np.concatenate([c.numpy().T for c in codes])
    return float(len({r.tobytes() for r in rows}))


def zen(space, arch, images, labels, seed, samples, tokens, gamma=1e-2):
    """log mean_b ||f(x) - f(x + gamma eps)||_1, f the head input; Linear/Conv2d weights N(0,1), biases 0."""
    model = build(space, arch, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.zero_()
    x, eps = torch.randn(images.shape, generator=g), torch.randn(images.shape, generator=g)
    feats = []
    h = model.head.register_forward_pre_hook(lambda m, i: feats.append(i[0].double().numpy().reshape(len(x), -1)))
    with torch.no_grad():
        seeded(model, x, seed)
        seeded(model, x + gamma * eps, seed)
    h.remove()
    return math.log(np.abs(feats[0] - feats[1]).sum(axis=1).mean())


def epe_nas(space, arch, images, labels, seed, samples, tokens, k=1e-5):
    """Official branch for <= 100 classes: sum over classes of |sum log(|corr(J_c)| + k)|."""
    model = build(space, arch, seed)
    x = images.clone().requires_grad_(True)
    y = seeded(model, x, seed)
    y.backward(torch.ones_like(y))
    jac = x.grad.reshape(len(x), -1).double().numpy()
    assert NUM_CLASSES <= 100
    total = 0.0
    for c in np.unique(labels.numpy()):
        rows = jac[labels.numpy() == c]
        corr = np.corrcoef(rows) if len(rows) > 1 else np.array(1.0)
        total += abs(np.log(np.abs(corr) + k).sum())
    return float(total)


def _blocks(model):
    return [m for m in model.modules() if type(m).__name__ == "Block"]


def az_nas_parts(space, arch, images, labels, seed, samples, tokens) -> tuple[float, float, float]:
    """(sum of the features' eigenvalue entropies, mean trainability score, FLOPs), the features
    being each block's x + attn(norm1(x)) and its output, computed block by block here."""
    model = build(space, arch, seed).eval()
    g = torch.Generator().manual_seed(seed)
    feats_all, pair_m = [], {}
    for idx in chunks(images.shape[0]):
        feats, maps = [], []
        with torch.no_grad():  # the features, block by block, by hand
            hs = [b.register_forward_pre_hook(lambda m, i: feats.append(i[0])) for b in _blocks(model)]
            model(images[idx])
            for h in hs:
                h.remove()
        stream = []
        for b, x in zip(_blocks(model), feats):
            att = (lambda b: lambda x: x + b.attn(b.norm1(x)))(b)
            mlp = (lambda b: lambda x: x + b.mlp(b.norm2(x)))(b)
            xa = att(x)
            stream += [(xa, att, x), (mlp(xa), mlp, xa)]
        feats_all.append([s[0] for s in stream])
        for i in range(len(stream) - 1, 0, -1):
            out, fn, inp = stream[i]
            if inp.shape != stream[i - 1][0].shape or not torch.allclose(inp, stream[i - 1][0]):
                continue  # not consecutive (a PiT stage boundary)
            r = torch.randint(0, 2, out.shape, generator=g).float() * 2 - 1
            _, vjp = torch.func.vjp(fn, inp)
            (gin,) = vjp(r)
            a, b = gin.detach().double().reshape(-1, out.shape[-1]).numpy(), r.double().reshape(-1, out.shape[-1]).numpy()
            m, n = pair_m.get(i, (0, 0))
            pair_m[i] = (m + a.T @ b, n + a.shape[0])
    expr = 0.0
    for j in range(len(feats_all[0])):
        x = np.concatenate([f[j].detach().double().reshape(-1, f[j].shape[-1]).numpy() for f in feats_all])
        lam = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))
        p = lam / lam.sum()
        expr += -(p * np.log(p + 1e-8)).sum()
    sig = [np.linalg.svd(m / n, compute_uv=False)[0] for m, n in pair_m.values()]
    train = float(np.mean([-s - 1 / (s + 1e-6) + 2 for s in sig]))
    flops = float(get_space(space).flops(arch, NUM_CLASSES, images.shape[-1]))
    return float(expr), train, flops


def az_nas_scores(space, archs, images, labels, seed, samples, tokens) -> np.ndarray:
    parts = np.array([az_nas_parts(space, a, images, labels, seed, samples, tokens) for a in archs])
    return sum(np.log(rankdata(parts[:, j]) / len(archs)) for j in range(3))


def te_nas(space, arch, images, labels, seed, samples, tokens):
    """TE-NAS's ``get_ntk_n`` as written: one train-mode forward, then each image's summed logits
    backpropagated on its own; the Linear/Conv2d weight gradients of image n are row n; minus the
    condition number of rows @ rows.T."""
    model = build(space, arch, seed)
    y = seeded(model, images, seed)
    rows = []
    for n in range(len(images)):
        model.zero_grad(set_to_none=True)
        y[n:n + 1].backward(torch.ones_like(y[n:n + 1]), retain_graph=True)
        rows.append(np.concatenate([m.weight.grad.double().numpy().ravel() for m in model.modules()
                                    if isinstance(m, (nn.Linear, nn.Conv2d))]))
    g = np.stack(rows)
    ev = np.linalg.eigvalsh(g @ g.T)
    return -ev[-1] / ev[0]


REFERENCES = {f.__name__: f for f in (token_entropy, token_entropy_mlp, token_min_eig, meco, apd, swap, zen,
                                      epe_nas, te_nas)}
assert GROUPS == 4
