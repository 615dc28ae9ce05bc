"""Independent plain-torch references of every zoo proxy, written from the papers' definitions.

Nothing here imports ``autoprox.stats`` or ``autoprox.proxy``: each reference builds the model with
``get_space(space).build(...)`` and runs its own forward/backward with its own hooks. Where a paper
leaves a choice open, the engine's documented convention is followed:

- every data pass is one train-mode forward (DropPath active) seeded with ``torch.manual_seed(seed)``
  inside ``torch.random.fork_rng``; the loss is the cross-entropy of the batch. The base pass (every
  proxy here but jacob_cov and TVT's teacher gap) runs the batch in ``GROUPS`` near-equal
  chunks (``np.array_split``), one after the other after a single seeding, each chunk's mean loss
  scaled by its share of the batch: the gradients are the batch's, and ZiCo's groups are the chunks
  (GraSP's pass sweeps the same chunks twice, with the same seed);
- weight layers are the model's Linear and Conv2d modules (patch, qkv, proj, fc1, fc2, PiT's pooling
  conv and cls fc, head), weights only (no biases);
- activations read by the evolved proxies and autoprox_paper are subsampled to the first ``samples``
  images and ``tokens`` evenly spaced token positions, ``linspace(0, N-1, tokens).round()`` (cls included);
  per-layer lists of different layer types are paired by forward position, the shorter list winning.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from autoprox.spaces import get_space

NUM_CLASSES, IMG, DROP_PATH = 10, 32, 0.1
GROUPS = 4  # StatsConfig.grad_groups


def build(space: str, arch: dict, seed: int = 0) -> nn.Module:
    return get_space(space).build(arch, num_classes=NUM_CLASSES, img_size=IMG, seed=seed, drop_path=DROP_PATH)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def seeded(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Logits of one seeded train-mode forward."""
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model(x)


def chunks(n: int) -> list[np.ndarray]:
    return np.array_split(np.arange(n), min(GROUPS, n))


def ce_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int) -> list[list[torch.Tensor]]:
    """The chunked pass: each weight's .grad = sum over chunks of share * d(chunk mean CE)/dW; returns
    each chunk's own d(chunk mean CE)/dW (ZiCo's groups). Activation hooks see every chunk in turn."""
    model.zero_grad(set_to_none=True)
    model.train()
    ws = [m.weight for m in weight_layers(model)]
    per, total = [], [torch.zeros_like(w) for w in ws]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for idx in chunks(images.shape[0]):
            share = len(idx) / images.shape[0]
            for w in ws:
                w.grad = None
            (share * F.cross_entropy(model(images[idx]), labels[idx])).backward()  # also activations' .grad
            per.append([w.grad.detach().clone() / share for w in ws])
            total = [t + w.grad for t, w in zip(total, ws)]
    for w, t in zip(ws, total):
        w.grad = t
    return per


def chunked_forward(model: nn.Module, images: torch.Tensor, seed: int) -> None:
    """The chunked pass's forward alone (the same DropPath draws), no gradients."""
    model.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for idx in chunks(images.shape[0]):
            model(images[idx])


def joined(xs: list[torch.Tensor], n_chunks: int, grad: bool = False) -> list[torch.Tensor]:
    """Taps of a chunked pass (chunk after chunk, each in layer order), joined per layer over the batch."""
    per = len(xs) // n_chunks
    pick = (lambda x: x.grad) if grad else (lambda x: x.detach())
    return [torch.cat([pick(xs[c * per + i]) for c in range(n_chunks)]) for i in range(per)]


def sub(x: torch.Tensor, samples: int, tokens: int) -> torch.Tensor:
    """First ``samples`` images; for (B, N, C) tokens, ``tokens`` evenly spaced positions."""
    x = x.detach()[:samples]
    if x.dim() == 3 and x.shape[1] > tokens:
        idx = sorted(set(round(v) for v in np.linspace(0, x.shape[1] - 1, tokens).tolist()))
        x = x[:, idx]
    return x.float()


class Taps:
    """Records inputs (or outputs) of modules of a type, with their gradients after backward."""

    def __init__(self, model: nn.Module, kind: type, output: bool = False) -> None:
        self.xs: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook(output)) for m in model.modules() if isinstance(m, kind)]

    def _hook(self, output: bool) -> Callable:
        def hook(m, i, o):
            x = o if output else i[0]
            if x.requires_grad:
                x.retain_grad()
            self.xs.append(x)
        return hook

    def remove(self) -> "Taps":
        for h in self.handles:
            h.remove()
        return self


# ------------------------------------------------------------------ data-free
def depth_width(space, arch, images, labels, seed, samples, tokens):
    """log(depth * width), read off the built model: its transformer blocks (modules named Block)
    and the mean width they work at (the width of each block's first LayerNorm)."""
    model = build(space, arch, seed)
    blocks = [m for m in model.modules() if type(m).__name__ == "Block"]
    widths = [next(n for n in b.modules() if isinstance(n, nn.LayerNorm)).normalized_shape[0] for b in blocks]
    return math.log(len(blocks) * sum(widths) / len(widths))


def params(space, arch, images, labels, seed, samples, tokens):
    return float(sum(p.numel() for p in build(space, arch, seed).parameters()))


def flops(space, arch, images, labels, seed, samples, tokens):
    """MACs of one image: every Linear/Conv2d (no bias) plus QK^T and attn @ V (and, in AutoFormer's
    supernet attention, the relative-position products on keys and values: two more)."""
    model = build(space, arch, seed).eval()
    macs = [0]

    def count(m, i, o):
        if isinstance(m, nn.Linear):
            macs[0] += o.numel() * m.in_features
        elif isinstance(m, nn.Conv2d):
            macs[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif type(m).__name__ == "AttentionMap":  # (1, H, N, N); head dim = width / H
            macs[0] += m.products * o.numel() * m.width // o.shape[1]

    for m in model.modules():
        if type(m).__name__ in ("Attention", "RelPosAttention"):
            m.attn_map.width = m.proj.in_features
            m.attn_map.products = 4 if type(m).__name__ == "RelPosAttention" else 2
    handles = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(images[:1])
    for h in handles:
        h.remove()
    return float(macs[0])


# ------------------------------------------------------------------ gradient saliency
def snip(space, arch, images, labels, seed, samples, tokens):
    """SNIP (Lee et al. 2019): sum |W * dL/dW|."""
    model = build(space, arch, seed)
    ce_backward(model, images, labels, seed)
    return sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in weight_layers(model))


def grad_norm(space, arch, images, labels, seed, samples, tokens):
    """sum_l ||dL/dW_l||_F."""
    model = build(space, arch, seed)
    ce_backward(model, images, labels, seed)
    return sum(float(m.weight.grad.norm()) for m in weight_layers(model))


def grasp(space, arch, images, labels, seed, samples, tokens):
    """GraSP (Wang et al. 2020): -sum W * (H g), g the gradient of the batch's mean CE and H its Hessian.
    In the engine's chunks: g summed over one seeded sweep of the chunks, then H g summed over a second,
    identically seeded sweep as each chunk's vector-Jacobian product of its gradient with g."""
    model = build(space, arch, seed)
    ws = [m.weight for m in weight_layers(model)]
    n = images.shape[0]

    def sweep():  # each chunk's gradient (with its graph) of its share of the batch's mean loss
        model.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for idx in chunks(n):
                loss = F.cross_entropy(model(images[idx]), labels[idx]) * len(idx) / n
                yield torch.autograd.grad(loss, ws, create_graph=True)
    g = [sum(parts) for parts in zip(*[[x.detach() for x in gc] for gc in sweep()])]
    hg = [torch.zeros_like(w) for w in ws]
    for gc in sweep():
        hg = [a + b for a, b in zip(hg, torch.autograd.grad(gc, ws, grad_outputs=g))]
    return -sum(float((w.detach() * h).sum()) for w, h in zip(ws, hg))


def _fisher_terms(model, images, labels, seed) -> list[float]:
    """Per Linear input x: 0.5 * mean_b sum_c (sum_tokens x * dL/dx)^2 (Turner et al. 2020)."""
    taps = Taps(model, nn.Linear)
    ce_backward(model, images, labels, seed)
    taps.remove()
    k = len(chunks(images.shape[0]))
    out = []
    for x, g in zip(joined(taps.xs, k), joined(taps.xs, k, grad=True)):
        s = (x * g).sum(1) if x.dim() == 3 else x * g
        out.append(float(0.5 * s.pow(2).flatten(1).sum(1).mean()))
    return out


def fisher(space, arch, images, labels, seed, samples, tokens):
    return sum(_fisher_terms(build(space, arch, seed), images, labels, seed))


def zico(space, arch, images, labels, seed, samples, tokens):
    """ZiCo (Li et al. 2023): sum_l log sum_theta E|g| / std(g), over ``GROUPS`` splits of the batch."""
    per = ce_backward(build(space, arch, seed), images, labels, seed)
    total = 0.0
    for layer in zip(*per):
        g = torch.stack(layer).double()
        mean_abs, std = g.abs().mean(0), g.std(0, unbiased=False)
        ratio = torch.where(std > 0, mean_abs / std.clamp_min(1e-300), torch.zeros_like(std))
        total += math.log(float(ratio.sum()))
    return total


# ------------------------------------------------------------------ |W| all-ones pass
def _synflow_grads(space, arch, seed) -> tuple[list[tuple[str, torch.Tensor, torch.Tensor]], nn.Module]:
    """(name, |W|, dR/d|W|) per weight layer, R = sum(logits(ones)) with every parameter |theta|, eval mode."""
    model = build(space, arch, seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.abs())
    model.eval()
    model(torch.ones(1, 3, IMG, IMG)).sum().backward()
    mods = dict(model.named_modules())
    return [(n, m.weight.detach(), m.weight.grad) for n, m in mods.items()
            if isinstance(m, (nn.Linear, nn.Conv2d))], model


def synflow(space, arch, images, labels, seed, samples, tokens):
    """SynFlow (Tanaka et al. 2020): sum |theta * dR/dtheta| on the |theta| model."""
    layers, _ = _synflow_grads(space, arch, seed)
    return sum(float((w * g).abs().sum()) for _, w, g in layers)


def dss(space, arch, images, labels, seed, samples, tokens):
    """TF-TAS DSS (Zhou et al. 2022): MSA linears ||dR/dW||_nuc ||W||_nuc, other linears (not the patch
    embedding) sum |W * dR/dW|, on the |W| all-ones pass."""
    layers, _ = _synflow_grads(space, arch, seed)
    total = 0.0
    for name, w, g in layers:
        if name.endswith(("attn.qkv", "attn.proj")):
            total += float(torch.linalg.matrix_norm(g, "nuc") * torch.linalg.matrix_norm(w, "nuc"))
        elif "patch" not in name:
            total += float((w * g).abs().sum())
    return total


# ------------------------------------------------------------------ activation kernels
def _naswot_k(space, arch, images, seed) -> torch.Tensor:
    """Mellor et al. 2021: K = sum over GELUs of c c^T + (1-c)(1-c)^T, c the binary codes (x > 0)."""
    model = build(space, arch, seed)
    taps = Taps(model, nn.GELU)
    chunked_forward(model, images, seed)
    taps.remove()
    k = torch.zeros(images.shape[0], images.shape[0], dtype=torch.float64)
    for x in joined(taps.xs, len(chunks(images.shape[0]))):
        c = (x.detach() > 0).flatten(1).double()
        k += c @ c.T + (1 - c) @ (1 - c).T
    return k


def naswot(space, arch, images, labels, seed, samples, tokens):
    return float(np.linalg.slogdet(_naswot_k(space, arch, images, seed).numpy())[1])


def evolved_autoformer(space, arch, images, labels, seed, samples, tokens):
    """sum_ij (max K + log K_ij), K the NASWOT kernel."""
    k = _naswot_k(space, arch, images, seed)
    return float((k.max() + k.log()).sum())


def jacov(space, arch, images, labels, seed, samples, tokens):
    """jacob_cov (Mellor et al. 2021), their eval_score: -sum(log(v + k) + 1/(v + k)), k = 1e-5."""
    model = build(space, arch, seed)
    x = images.clone().requires_grad_(True)
    y = seeded(model, x, seed)
    y.backward(torch.ones_like(y))
    jacob = x.grad.reshape(x.shape[0], -1).numpy()
    v = np.linalg.eigvalsh(np.corrcoef(jacob.astype(np.float64)))
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


# ------------------------------------------------------------------ evolved / Auto-Prox
def _linear_and_norm(space, arch, images, labels, seed):
    """Linear inputs and the gradients of the LayerNorm outputs of the chunked pass, per layer in forward order."""
    model = build(space, arch, seed)
    lin, norm = Taps(model, nn.Linear), Taps(model, nn.LayerNorm, output=True)
    ce_backward(model, images, labels, seed)
    k = len(chunks(images.shape[0]))
    lin.remove()
    norm.remove()
    return joined(lin.xs, k), joined(norm.xs, k, grad=True), model


def evolved_generic(space, arch, images, labels, seed, samples, tokens):
    lin, _, _ = _linear_and_norm(space, arch, images, labels, seed)
    return sum(float(sub(x, samples, tokens).abs().sum()) for x in lin)


def evolved_pit(space, arch, images, labels, seed, samples, tokens):
    """mean over Linear layers of fisher_l + ||sub(x_l)||_nuc (2-D view: image x rest)."""
    fish = _fisher_terms(build(space, arch, seed), images, labels, seed)
    lin, _, _ = _linear_and_norm(space, arch, images, labels, seed)
    nuc = [float(torch.linalg.matrix_norm(sub(x, samples, tokens).abs().flatten(1), "nuc")) for x in lin]
    return float(np.mean([f + n for f, n in zip(fish, nuc)]))


def autoprox_paper(space, arch, images, labels, seed, samples, tokens):
    """Auto-Prox (Wei et al. 2024): mean over paired layers of ||minmax(t2)||_F + mean(sqrt(sigmoid(t4g))),
    t2 = Linear inputs, t4g = gradients of the LayerNorm outputs."""
    lin, norm, _ = _linear_and_norm(space, arch, images, labels, seed)
    vals = []
    for x, o in zip(lin, norm):
        a, g = sub(x, samples, tokens), sub(o, samples, tokens)
        mm = (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else torch.zeros_like(a)
        vals.append(float(mm.norm()) + float(torch.sigmoid(g).sqrt().mean()))
    return float(np.mean(vals))


# ------------------------------------------------------------------ TVT
def tvt_parts(space, arch, images, seed, teacher_path: str) -> tuple[float, float]:
    """(teacher_gap, sum_l ||W_l||_F). gap = mean((A(F_s) - A(F_t))^2), A(F) = L2-normalised channel
    mean of F^2, F_s = the last transformer block's patch tokens as a map, both resized to the larger size."""
    model = build(space, arch, seed)
    last = {}
    for m in model.modules():
        if type(m).__name__ == "Block":
            m.register_forward_hook(lambda m, i, o: last.__setitem__("t", o))
    with torch.no_grad():
        seeded(model, images, seed)
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            teacher = torch.jit.load(teacher_path).eval()
        f_t = teacher(images).float()
    t = last["t"]
    h = math.isqrt(t.shape[1] - 1)
    f_s = t[:, -h * h:].transpose(1, 2).reshape(t.shape[0], -1, h, h)
    size = (max(f_s.shape[2], f_t.shape[2]), max(f_s.shape[3], f_t.shape[3]))

    def att(f):
        f = f if tuple(f.shape[2:]) == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        a = f.pow(2).mean(1).flatten(1)
        return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    gap = float((att(f_s) - att(f_t)).pow(2).mean())
    return gap, sum(float(m.weight.detach().norm()) for m in weight_layers(model))


def tvt_scores(space, archs, images, seed, teacher_path) -> np.ndarray:
    """Rank-sum over the archs of -teacher_gap and of the capability term."""
    parts = np.array([tvt_parts(space, a, images, seed, teacher_path) for a in archs])
    return rankdata(-parts[:, 0]) + rankdata(parts[:, 1])


def evolved_c100_kd_parts(space, arch, images, labels, seed, samples, tokens) -> tuple[float, float, float]:
    """(sum over Linear layers of mean |sub(x_l)|, number of transformer blocks, #params)."""
    lin, _, model = _linear_and_norm(space, arch, images, labels, seed)
    mass = sum(float(sub(x, samples, tokens).abs().mean()) for x in lin)
    blocks = sum(1 for m in model.modules() if type(m).__name__ == "Block")
    return mass, float(blocks), float(sum(p.numel() for p in model.parameters()))


def evolved_c100_kd_scores(space, archs, images, labels, seed, samples, tokens) -> np.ndarray:
    """Rank-sum over the archs of its three parts (average ranks for ties)."""
    parts = np.array([evolved_c100_kd_parts(space, a, images, labels, seed, samples, tokens) for a in archs])
    return sum(rankdata(parts[:, j]) for j in range(parts.shape[1]))


REFERENCES: dict[str, Callable[..., float]] = {
    f.__name__: f for f in (params, flops, snip, grad_norm, grasp, fisher, zico, synflow, dss, naswot,
                            evolved_autoformer, jacov, evolved_generic, evolved_pit, autoprox_paper, depth_width)}
