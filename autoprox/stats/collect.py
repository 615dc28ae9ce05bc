"""Hook-based collection of per-layer statistics from any torch ViT.

Depends on torch alone: ``autoprox export --format python`` embeds this file
verbatim, so exported proxies see exactly the statistics the engine sees.
Weight layers are ``autoprox.stats.layers.weight_layers``'s: the modules tagged with ``KIND_ATTR``
(autoprox's own spaces), or in an untagged model every Linear/Conv2d (kind guessed from its name)
and ``nn.MultiheadAttention``'s projections. Attention maps are the outputs of modules whose class
is named ``AttentionMap``, and the per-head maps of every ``nn.MultiheadAttention``.
Every pass function has one signature, ``(model, images, labels, seed, settings, families)
-> (tensors, kinds, scalars)``; ``autoprox.stats.passes`` registers them.
"""
from __future__ import annotations

from typing import Callable, Collection, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from primitives._tensor import as_matrix, nuclear  # torch only, embedded before this file in exports
from autoprox.stats.layers import KIND_ATTR, MhaMaps, hook_owner, weight_layers  # noqa: F401 (torch only, embedded)
from autoprox.stats.layers import timm_attention_hooks, unfused_attention  # one per line: exports drop them
from autoprox.stats.layers import seeded

def token_index(n: int, k: int) -> torch.Tensor:
    """``k`` evenly spaced indices in [0, n) (all of them when n <= k)."""
    if n <= k:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long().unique()


def rows(w: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` evenly spaced output units (first dim) of a weight-shaped tensor, as float32 on the CPU."""
    return w.detach()[token_index(w.shape[0], k).to(w.device)].float().cpu().clone()


def per_layer(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """One 0-d float32 CPU tensor per layer."""
    return [v.detach().float().reshape(()).cpu() for v in values]


def subsample(x: torch.Tensor, samples: int, tokens: int) -> torch.Tensor:
    """First ``samples`` images; ``tokens`` evenly spaced positions (queries and keys of maps)."""
    x = x.detach()[:samples]
    if x.dim() == 3:  # (B, N, C) tokens
        x = x[:, token_index(x.shape[1], tokens).to(x.device)]
    elif x.dim() == 4:  # (B, H, N, N) attention
        i = token_index(x.shape[-1], tokens).to(x.device)
        x = x[:, :, i][:, :, :, i]
    return x.float().cpu().clone()


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([a, b]) if a.numel() else b


class Recorder:
    """Forward hooks storing subsampled activations; tensor hooks for their gradients. The batch
    runs in chunks (``start_chunk``): a layer's rows of the first ``samples`` images are joined
    across chunks, and NASWOT's codes and the Fisher sums gather every image."""

    def __init__(self, samples: int, tokens: int, wants: Callable[[str], bool] = lambda f: True) -> None:
        self.samples, self.tokens, self.wants = samples, tokens, wants
        self.tensors: dict[str, list[torch.Tensor]] = {}
        self.kinds: dict[str, list[str]] = {}
        self.codes: list[list[torch.Tensor]] = []  # per GELU layer: each chunk's sign codes
        self.order: list[nn.Module] = []
        self.offset = 0  # the current chunk's first image
        self.calls: dict[str, int] = {}  # per family: layers seen in the current chunk

    def start_chunk(self, offset: int) -> None:
        self.offset, self.calls = offset, {}

    def _slot(self, family: str) -> int:
        i = self.calls.get(family, 0)
        self.calls[family] = i + 1
        return i

    def _store(self, family: str, kind: str, x: torch.Tensor) -> None:
        i = self._slot(family)
        vals, grads = (self.tensors.setdefault(f, []) for f in (family, family + "_grad"))
        if self.offset == 0:
            for f in (family, family + "_grad"):
                self.kinds.setdefault(f, []).append(kind)
            vals.append(torch.zeros(0))
            grads.append(torch.zeros(0))
        take = self.samples - self.offset
        if take <= 0:
            return
        vals[i] = _cat(vals[i], subsample(x, take, self.tokens))
        if x.requires_grad:
            x.register_hook(lambda g: grads.__setitem__(i, _cat(grads[i], subsample(g, take, self.tokens))))

    def _act(self, family: str) -> bool:
        return self.wants(family) or self.wants(family + "_grad")

    def attach(self, model: nn.Module) -> list:
        """Hooks for the wanted families only; weight layers are always tracked (forward order)."""
        handles = [hook_owner(m).register_forward_hook(self._weight_hook(m, kind)) for m, kind in weight_layers(model)]
        maps = MhaMaps(lambda a: self._store("attention", "attn_map", a))
        if self._act("attention"):
            handles += timm_attention_hooks(model, lambda a: self._store("attention", "attn_map", a))
        gelu = self._act("gelu_input") or self.wants("naswot_kernel")
        for m in model.modules():
            if isinstance(m, nn.GELU) and gelu:
                handles.append(m.register_forward_hook(self._gelu_hook))
            elif isinstance(m, nn.LayerNorm) and self._act("norm_output"):
                handles.append(m.register_forward_hook(lambda m, i, o: self._store("norm_output", "norm", o)))
            elif type(m).__name__ == "AttentionMap" and self._act("attention"):
                handles.append(m.register_forward_hook(lambda m, i, o: self._store("attention", "attn_map", o)))
            elif isinstance(m, nn.MultiheadAttention) and self._act("attention"):
                handles += maps.attach(m)
        return handles

    def _weight_hook(self, layer: object, kind: str):
        linear, fisher = self._act("linear_input"), self.wants("fisher")

        def hook(m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if self.offset == 0:
                self.order.append(layer)
            if isinstance(layer, nn.Linear):
                if linear:
                    self._store("linear_input", kind, inputs[0])
                if fisher:
                    self._fisher(kind, inputs[0])
        return hook

    def _fisher(self, kind: str, x: torch.Tensor) -> None:
        """Sum over images of 0.5 * sum over channels of (sum over tokens of x * dL/dx)^2 (``collect``
        divides by the batch size)."""
        out = self.tensors.setdefault("fisher", [])
        slot = self._slot("fisher")
        if self.offset == 0:
            self.kinds.setdefault("fisher", []).append(kind)
            out.append(torch.tensor(float("nan")))
        xd = x.detach()  # the closure must not hold x itself: x -> hook -> x would be a cycle

        def hook(g: torch.Tensor) -> None:
            s = (xd * g).sum(dim=1) if xd.dim() == 3 else xd * g
            v = (0.5 * s.float().pow(2).flatten(1).sum(1).sum()).cpu()
            out[slot] = v if torch.isnan(out[slot]) else out[slot] + v
        if x.requires_grad:
            x.register_hook(hook)

    def _gelu_hook(self, m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        if self._act("gelu_input"):
            self._store("gelu_input", "gelu", x)
        if self.wants("naswot_kernel"):
            i = self._slot("naswot")
            if self.offset == 0:
                self.codes.append([])
            self.codes[i].append((x.detach() > 0).flatten(1))

    def naswot(self) -> torch.Tensor:
        """K = sum over GELU layers of the number of units on which two images agree in sign."""
        k = None
        for chunks in self.codes:
            code = torch.cat(chunks).float() * 2 - 1  # +-1 codes per image
            kl = (code @ code.T + code.shape[1]) / 2
            k = kl if k is None else k + kl
        return k.cpu() if k is not None else torch.zeros(0)


def _weights(layers: list[nn.Module], grad: bool, k: int) -> list[torch.Tensor]:
    return [rows(m.weight.grad if grad else m.weight, k) for m in layers]


GRAD_FAMILIES = ("weight_grad", "linear_input_grad", "gelu_input_grad", "norm_output_grad", "attention_grad",
                 "fisher", "input_grad_corr", "snip_saliency", "weight_grad_norm", "grad_snr",
                 "zico_snr")  # need the backward pass
VIRTUAL_FAMILIES = ("virtual_grad", "synflow_saliency", "dss_nuclear")  # need the SynFlow-style pass
ZICO_FAMILIES = ("grad_snr", "zico_snr")
WEIGHT_SHAPED = ("weight", "weight_grad", "weight_norm", "snip_saliency", "weight_grad_norm") + VIRTUAL_FAMILIES \
    + ZICO_FAMILIES


def chunk_losses(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, seed: int, groups: int,
                 before: Callable[[int], None] = lambda first: None) -> Iterator[tuple[float, torch.Tensor]]:
    """(share of the batch, mean cross-entropy) of each of ``min(groups, B)`` near-equal chunks
    (``tensor_split``), in order, all under one seeding; ``before(first image)`` runs ahead of each
    chunk's forward. Every pass that chunks the batch goes through here, so they draw the same masks."""
    n, device = x.shape[0], x.device
    with seeded(seed, device):
        for idx in torch.arange(n).tensor_split(min(groups, n)):
            before(int(idx[0]))
            idx = idx.to(device)
            yield len(idx) / n, F.cross_entropy(model(x[idx]), labels[idx])


class ChunkSums:
    """Each weight layer's gradient summed over the chunks (the batch's, as each chunk's loss is scaled
    by its share), and for ZiCo running statistics of the chunks' own-mean gradients g_c = grad / share:
    Welford's sum of squared deviations and the sum of |g_c|. With equal shares the running mean of
    the g_c is the running total over its share, so three buffers per layer are kept instead of every
    chunk's gradient (four with unequal shares)."""

    def __init__(self, zico: bool, equal_shares: bool) -> None:
        self.zico, self.equal, self.count = zico, equal_shares, 0
        self.total: list[torch.Tensor] = []
        self.mean: list[torch.Tensor] = []  # only with unequal shares
        self.m2: list[torch.Tensor] = []
        self.abs_sum: list[torch.Tensor] = []

    def add(self, grads: list[torch.Tensor], share: float) -> None:
        """Takes ownership of ``grads`` (the chunk's scaled gradients)."""
        self.count += 1
        for i, g in enumerate(grads):
            if self.zico:
                self._welford(i, g, share)  # reads the total before this chunk's is added
            if self.count == 1:
                self.total.append(g)
            else:
                self.total[i].add_(g)

    def _welford(self, i: int, g: torch.Tensor, share: float) -> None:
        gc, k = g / share, self.count
        if k == 1:
            self.m2.append(torch.zeros_like(gc))
            self.abs_sum.append(gc.abs())
            if not self.equal:
                self.mean.append(gc.clone())
            return
        if self.equal:
            delta = gc - self.total[i] / (share * (k - 1))
            after = (self.total[i] + g) / (share * k)
        else:
            delta = gc - self.mean[i]
            after = self.mean[i].add_(delta, alpha=1 / k)
        self.m2[i].addcmul_(delta, gc - after)
        self.abs_sum[i].add_(gc.abs())

    def snr(self, weight_rows: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """ZiCo's mean |g_c| / std g_c per weight (population std; 0 where it is 0), one layer at a
        time: (``weight_rows`` output units of it, its sum) per layer; the running buffers are freed."""
        kept, sums = [], []
        while self.m2:
            m2, a = self.m2.pop(0), self.abs_sum.pop(0)
            std = m2.div_(self.count).sqrt_()
            v = torch.where(std > 0, a.div_(self.count) / std.clamp_min(1e-30), torch.zeros_like(std))
            kept.append(rows(v, weight_rows))
            sums.append(v.sum())
        self.mean = []
        return kept, per_layer(sums)


def chunked_backward(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, seed: int, groups: int,
                     rec: Recorder, backward: bool, zico: bool) -> tuple[float, ChunkSums]:
    """The batch in ``min(groups, B)`` near-equal chunks (``tensor_split``), seeded once: each chunk's
    mean cross-entropy, scaled by its share of the batch, is back-propagated, so gradients are those
    of the batch's mean loss while only one chunk's activations (and one chunk's gradients) are held.
    Returns (batch loss, the gradients' ``ChunkSums``)."""
    def before(first: int) -> None:
        rec.start_chunk(first)
        model.zero_grad(set_to_none=True)
    loss_sum, sums = 0.0, ChunkSums(zico, x.shape[0] % min(groups, x.shape[0]) == 0)
    for share, loss in chunk_losses(model, x, labels, seed, groups, before):
        loss_sum += share * float(loss.detach())
        if not backward:
            continue
        (loss * share).backward()
        grads = [m.weight.grad.detach() for m in rec.order]
        for m in rec.order:
            m.weight.grad = None
        sums.add(grads, share)
    return loss_sum, sums


def collect(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int,
            samples: int, tokens: int, families: Collection[str] | None = None,
            weight_rows: int = 32, groups: int = 4) -> tuple[dict, dict, float]:
    """(tensors, kinds, loss): one train-mode forward+backward of the batch (in ``groups`` chunks,
    see ``chunked_backward``), then the virtual pass.

    ``families`` (default: all) limits the work to what they need: hooks only for wanted
    activations, no backward without a gradient family, no virtual pass without a family
    that reads it; the wanted values are those of the full pass. Weight-shaped families
    keep ``weight_rows`` evenly spaced output units of each layer; the per-layer reductions
    (``weight_norm``, ``snip_saliency``, ``zico_snr``, ...) are exact, over every element. ZiCo's
    gradient signal-to-noise is over the chunks. ``model`` must sit on the device of ``images``;
    after the virtual pass it holds |w| weights.
    """
    def wants(f: str) -> bool:
        return families is None or f in families
    zico = any(wants(f) for f in ZICO_FAMILIES)
    if zico and min(groups, images.shape[0]) < 2:
        raise ValueError(f"grad_groups must be in [2, batch size {images.shape[0]}] for ZiCo, got {groups}")
    rec = Recorder(samples, tokens, wants)
    handles = rec.attach(model)
    kind = {id(m.weight): k for m, k in weight_layers(model)}  # by parameter: a ParamWeight record is made per call
    x = images.detach().requires_grad_(wants("input_grad_corr"))  # own .grad; the batch stays untouched
    model.train()
    try:
        loss, sums = chunked_backward(model, x, labels, seed, groups, rec,
                                      any(wants(f) for f in GRAD_FAMILIES), zico)
    finally:
        for h in handles:
            h.remove()
    layers = rec.order
    for m, g in zip(layers, sums.total):
        m.weight.grad = g
    tensors, kinds = rec.tensors, rec.kinds
    if "fisher" in tensors:
        tensors["fisher"] = [v / images.shape[0] for v in tensors["fisher"]]
    ws = [m.weight for m in layers]
    z = sums.snr(weight_rows) if zico else ([], [])
    extra = {"weight": lambda: _weights(layers, False, weight_rows),
             "weight_grad": lambda: _weights(layers, True, weight_rows),
             "weight_norm": lambda: per_layer([w.detach().float().norm() for w in ws]),
             "snip_saliency": lambda: per_layer([(w.detach() * w.grad).float().abs().sum() for w in ws]),
             "weight_grad_norm": lambda: per_layer([w.grad.float().norm() for w in ws]),
             "grad_snr": lambda: z[0],
             "zico_snr": lambda: z[1],
             "naswot_kernel": lambda: [rec.naswot()],
             "input_grad_corr": lambda: [torch.corrcoef(x.grad.flatten(1)).float().cpu()]}
    for f, make in extra.items():
        if wants(f):
            tensors[f] = make()
            kinds[f] = [kind[id(m.weight)] for m in layers] if f in WEIGHT_SHAPED else ["batch"]
    if any(wants(f) for f in VIRTUAL_FAMILIES):  # last: the virtual pass changes the weights
        for f, v in virtual_pass(model, layers, images.shape[-1], images.device, weight_rows,
                                 wants("dss_nuclear")).items():
            if wants(f):
                tensors[f], kinds[f] = v, [kind[id(m.weight)] for m in layers]
    return tensors, kinds, loss


def base_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
              families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """The base pass: ``collect`` with the subsample of ``settings``; the loss as a scalar."""
    tensors, kinds, loss = collect(model, images, labels, seed, settings["act_samples"], settings["act_tokens"],
                                   families, settings["weight_rows"], settings["grad_groups"])
    return tensors, kinds, {"loss": loss}


def virtual_pass(model: nn.Module, layers: list[nn.Module], res: int, device: torch.device,
                 weight_rows: int, nuclear_norms: bool = True) -> dict[str, list[torch.Tensor]]:
    """SynFlow-style: |w| for every parameter, all-ones input, eval mode, vg = d sum(logits) / dW.
    ``virtual_grad`` keeps ``weight_rows`` output units of vg; ``synflow_saliency`` is sum |W * vg|
    and ``dss_nuclear`` ||vg||_* x || |W| ||_* (2-D views) per layer, with W the weights before; the
    nuclear norms, most of the pass's time, only if ``nuclear_norms``."""
    w0 = [m.weight.detach().clone() for m in layers]
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones(1, 3, res, res, device=device)).sum().backward()
    vg = [m.weight.grad.detach() for m in layers]
    out = {"virtual_grad": [rows(g, weight_rows) for g in vg],
           "synflow_saliency": per_layer([(w * g).float().abs().sum() for w, g in zip(w0, vg)])}
    if nuclear_norms:
        out["dss_nuclear"] = per_layer([nuclear(as_matrix(g).float()) * nuclear(as_matrix(w.abs()).float())
                                        for g, w in zip(vg, w0)])
    return out


def hessian_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
                 families: Collection[str] | None = None) -> tuple[dict, dict, dict]:
    """GraSP's Hessian-gradient product per weight layer, Hg = d/dW sum(g * stop_grad(g)), g = dL/dW of
    the batch's mean cross-entropy. The batch runs in ``grad_groups`` chunks as in the base pass, twice
    with the same seed (so both sweeps see the same DropPath masks): the first sums g, the second sums
    each chunk's d/dW (share * g_c . stop_grad(g)), which is H g with H the batch's Hessian.
    ``hessian_grad`` keeps ``weight_rows`` output units, ``grasp_saliency`` is sum(Hg * W) per layer."""
    layers = weight_layers(model)
    kind = {id(m): k for m, k in layers}
    order: list[nn.Module] = []  # weight layers in forward order, from the first chunk
    handles = [hook_owner(m).register_forward_hook(lambda mod, i, o, m=m: order.append(m)) for m, _ in layers]
    unfused = unfused_attention(model)  # fused attention kernels have no double backward
    model.train()
    g: list[torch.Tensor] = []
    hg: list[torch.Tensor] = []
    try:
        for sweep in (1, 2):
            for share, loss in chunk_losses(model, images.detach(), labels, seed, settings["grad_groups"]):
                for h in handles:
                    h.remove()
                ws = [m.weight for m in order]
                gc = torch.autograd.grad(loss * share, ws, create_graph=sweep == 2)
                if sweep == 1:
                    g = list(gc) if not g else [a + b for a, b in zip(g, gc)]
                    continue
                hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(gc, g)), ws)
                hg = list(hv) if not hg else [a + b for a, b in zip(hg, hv)]
    finally:
        for h in handles + unfused:
            h.remove()
    k = settings["weight_rows"]
    kinds = [kind[id(m)] for m in order]
    return ({"hessian_grad": [rows(h, k) for h in hg],
             "grasp_saliency": per_layer([(h * w.detach()).float().sum() for h, w in zip(hg, ws)])},
            {"hessian_grad": kinds, "grasp_saliency": kinds}, {})
