"""Per-layer ViT statistics from ONE forward+backward of the proxy batch.

A run builds each architecture freshly (seeded), runs the batch in train mode with
cross-entropy, and records, in forward order:

| family               | Auto-Prox | layers                          | stored as           |
|----------------------|-----------|---------------------------------|---------------------|
| weight               | t3        | every Linear and Conv2d         | full tensor         |
| weight_grad          | t3g       | same                            | full tensor         |
| virtual_grad         | -         | same (SynFlow-style pass)       | full tensor         |
| linear_input         | t2        | every Linear                    | subsample           |
| linear_input_grad    | t2g       | every Linear                    | subsample           |
| gelu_input           | t1        | every GELU                      | subsample           |
| gelu_input_grad      | t1g       | every GELU                      | subsample           |
| norm_output          | t4        | every LayerNorm                 | subsample           |
| norm_output_grad     | t4g       | every LayerNorm                 | subsample           |
| attention            | -         | every softmax(QK^T) map         | subsample           |
| attention_grad       | -         | same                            | subsample           |
| naswot_kernel        | -         | one (B x B) matrix              | full batch          |
| input_grad_corr      | -         | one (B x B) matrix              | full batch          |

Subsample rule (fixed, so every arch is treated alike): the first ``act_samples``
images of the batch, ``act_tokens`` token positions at evenly spaced indices
(``linspace(0, N-1)``, the cls token included), all channels; attention maps keep
those samples, all heads, and the same positions for queries and keys.
``naswot_kernel`` = sum over GELU layers of the agreement counts of the binary
codes (pre-activation > 0) of every image, all tokens; ``input_grad_corr`` = the
correlation matrix of the per-image input gradients of the loss (a one-pass stand-in
for the Jacobian of jacob_cov). ``virtual_grad``: weights replaced by |w| (every
parameter), one all-ones image, eval mode, gradient of sum(logits).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .spaces import SearchSpace
from .spaces.layers import AttentionMap, kind_of

WEIGHT_FAMILIES = ("weight", "weight_grad", "virtual_grad")
ACT_FAMILIES = ("linear_input", "gelu_input", "norm_output", "attention")
MATRIX_FAMILIES = ("naswot_kernel", "input_grad_corr")
FAMILIES = WEIGHT_FAMILIES + tuple(f for a in ACT_FAMILIES for f in (a, a + "_grad")) + MATRIX_FAMILIES
SCALARS = ("num_params", "flops", "loss")
AUTOPROX_INPUTS = {"t1": "gelu_input", "t1g": "gelu_input_grad", "t2": "linear_input",
                   "t2g": "linear_input_grad", "t3": "weight", "t3g": "weight_grad",
                   "t4": "norm_output", "t4g": "norm_output_grad"}


@dataclass(frozen=True)
class StatsConfig:
    act_samples: int = 4
    act_tokens: int = 8
    dtype: Literal["float16", "float32"] = "float16"
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        if self.act_samples < 1 or self.act_tokens < 1:
            raise ValueError("act_samples and act_tokens must be >= 1")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32, got {self.dtype!r}")


@dataclass
class ArchStats:
    """Statistics of one arch: family -> per-layer float32 tensors, and scalars."""

    tensors: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    kinds: dict[str, list[str]] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)

    def get(self, family: str) -> list[torch.Tensor]:
        if family not in self.tensors:
            raise KeyError(f"statistic {family!r} not available; have {sorted(self.tensors)}")
        return self.tensors[family]


def code_version() -> str:
    """Hash of the sources whose changes alter statistic values (part of cache keys)."""
    root = Path(__file__).resolve().parent
    files = [root / "stats.py", root / "batch.py", *sorted((root / "spaces").glob("*.py"))]
    h = hashlib.sha256(torch.__version__.split("+")[0].encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def token_index(n: int, k: int) -> torch.Tensor:
    """``k`` evenly spaced indices in [0, n) (all of them when n <= k)."""
    if n <= k:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long().unique()


def _subsample(x: torch.Tensor, cfg: StatsConfig) -> torch.Tensor:
    x = x.detach()[: cfg.act_samples]
    if x.dim() == 3:  # (B, N, C) tokens
        x = x[:, token_index(x.shape[1], cfg.act_tokens).to(x.device)]
    elif x.dim() == 4:  # (B, H, N, N) attention
        i = token_index(x.shape[-1], cfg.act_tokens).to(x.device)
        x = x[:, :, i][:, :, :, i]
    return x.float().cpu().clone()


class _Recorder:
    """Forward hooks that store subsampled activations and register gradient hooks."""

    def __init__(self, cfg: StatsConfig) -> None:
        self.cfg = cfg
        self.out = ArchStats()
        self.naswot: torch.Tensor | None = None
        self.weight_layers: list[tuple[str, nn.Module]] = []

    def _store(self, family: str, kind: str, x: torch.Tensor) -> None:
        t, k = self.out.tensors.setdefault(family, []), self.out.kinds.setdefault(family, [])
        t.append(_subsample(x, self.cfg))
        k.append(kind)
        g = self.out.tensors.setdefault(family + "_grad", [])
        self.out.kinds.setdefault(family + "_grad", []).append(kind)
        g.append(torch.zeros(0))
        slot = len(g) - 1
        if x.requires_grad:
            x.register_hook(lambda grad: g.__setitem__(slot, _subsample(grad, self.cfg)))

    def attach(self, model: nn.Module) -> list:
        handles = []
        for name, m in model.named_modules():
            if kind_of(m) is not None:
                handles.append(m.register_forward_hook(self._weight_hook(name)))
            if isinstance(m, nn.GELU):
                handles.append(m.register_forward_hook(self._gelu_hook))
            elif isinstance(m, nn.LayerNorm):
                handles.append(m.register_forward_hook(lambda m, i, o: self._store("norm_output", "norm", o)))
            elif isinstance(m, AttentionMap):
                handles.append(m.register_forward_hook(lambda m, i, o: self._store("attention", "attn_map", o)))
        return handles

    def _weight_hook(self, name: str):
        def hook(m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.weight_layers.append((name, m))
            if isinstance(m, nn.Linear):
                self._store("linear_input", kind_of(m), inputs[0])
        return hook

    def _gelu_hook(self, m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        self._store("gelu_input", "gelu", x)
        code = (x.detach() > 0).flatten(1).float() * 2 - 1  # +-1 codes per image
        k = (code @ code.T + code.shape[1]) / 2  # number of agreeing units
        self.naswot = k if self.naswot is None else self.naswot + k


def extract(space: SearchSpace, arch: Mapping, images: torch.Tensor, labels: torch.Tensor,
            num_classes: int, seed: int, cfg: StatsConfig, device: str | torch.device = "cpu") -> ArchStats:
    """All statistics of ``arch`` on the batch: one forward+backward, then the virtual pass."""
    device = torch.device(device)
    model = space.build(arch, num_classes=num_classes, img_size=images.shape[-1], seed=seed,
                        drop_path=cfg.drop_path).to(device)
    rec = _Recorder(cfg)
    handles = rec.attach(model)
    x = images.to(device).detach().requires_grad_(True)  # own .grad, batch untouched
    model.train()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        loss = F.cross_entropy(model(x), labels.to(device))
        loss.backward()
    for h in handles:
        h.remove()
    out = rec.out
    layers = rec.weight_layers
    kinds = [kind_of(m) for _, m in layers]
    out.tensors["weight"] = [m.weight.detach().float().cpu().clone() for _, m in layers]
    out.tensors["weight_grad"] = [m.weight.grad.detach().float().cpu().clone() for _, m in layers]
    out.tensors["naswot_kernel"] = [rec.naswot.cpu()] if rec.naswot is not None else [torch.zeros(0)]
    out.tensors["input_grad_corr"] = [torch.corrcoef(x.grad.flatten(1)).float().cpu()]
    out.tensors["virtual_grad"] = _virtual_grad(model, [m for _, m in layers], images.shape[-1], device)
    for f in ("weight", "weight_grad", "virtual_grad"):
        out.kinds[f] = list(kinds)
    out.kinds["naswot_kernel"] = out.kinds["input_grad_corr"] = ["batch"]
    out.scalars = {"num_params": float(space.num_params(arch, num_classes, images.shape[-1])),
                   "flops": float(space.flops(arch, num_classes, images.shape[-1])),
                   "loss": float(loss.detach())}
    return out


def _virtual_grad(model: nn.Module, layers: list[nn.Module], res: int, device: torch.device) -> list[torch.Tensor]:
    """SynFlow-style: |w| for every parameter, all-ones input, d sum(logits) / dW."""
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones(1, 3, res, res, device=device)).sum().backward()
    return [m.weight.grad.detach().float().cpu().clone() for m in layers]


def meta_stats(space: SearchSpace, arch: Mapping, num_classes: int, resolution: int) -> ArchStats:
    """Data-free statistics (parameter and FLOP counts) without building a model."""
    return ArchStats(scalars={"num_params": float(space.num_params(arch, num_classes, resolution)),
                              "flops": float(space.flops(arch, num_classes, resolution))})
