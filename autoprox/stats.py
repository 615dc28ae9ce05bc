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
| fisher               | -         | every Linear (its input)        | one scalar per layer|

Subsample rule (fixed, so every arch is treated alike): the first ``act_samples``
images of the batch, ``act_tokens`` token positions at evenly spaced indices
(``linspace(0, N-1)``, the cls token included), all channels; attention maps keep
those samples, all heads, and the same positions for queries and keys.
``naswot_kernel`` = sum over GELU layers of the agreement counts of the binary
codes (pre-activation > 0) of every image, all tokens; ``input_grad_corr`` = the
correlation matrix of the per-image input gradients of the loss (a one-pass stand-in
for the Jacobian of jacob_cov); ``fisher`` = 0.5 * mean over images of the sum over
channels of (sum over tokens of x * dL/dx)^2 for each Linear input x, full batch.
``virtual_grad``: weights replaced by |w| (every
parameter), one all-ones image, eval mode, gradient of sum(logits).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import torch

from .collect import collect
from .spaces import SearchSpace

WEIGHT_FAMILIES = ("weight", "weight_grad", "virtual_grad")
ACT_FAMILIES = ("linear_input", "gelu_input", "norm_output", "attention")
MATRIX_FAMILIES = ("naswot_kernel", "input_grad_corr")
FAMILIES = (WEIGHT_FAMILIES + tuple(f for a in ACT_FAMILIES for f in (a, a + "_grad")) + MATRIX_FAMILIES
            + ("fisher",))
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
    files = [root / "stats.py", root / "collect.py", root / "batch.py", *sorted((root / "spaces").glob("*.py"))]
    h = hashlib.sha256(torch.__version__.split("+")[0].encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def extract(space: SearchSpace, arch: Mapping, images: torch.Tensor, labels: torch.Tensor,
            num_classes: int, seed: int, cfg: StatsConfig, device: str | torch.device = "cpu") -> ArchStats:
    """All statistics of ``arch`` on the batch: one forward+backward, then the virtual pass."""
    device = torch.device(device)
    res = images.shape[-1]
    model = space.build(arch, num_classes=num_classes, img_size=res, seed=seed,
                        drop_path=cfg.drop_path).to(device)
    tensors, kinds, loss = collect(model, images.to(device), labels.to(device), seed,
                                   cfg.act_samples, cfg.act_tokens)
    scalars = {"num_params": float(space.num_params(arch, num_classes, res)),
               "flops": float(space.flops(arch, num_classes, res)), "loss": loss}
    return ArchStats(tensors, kinds, scalars)


def meta_stats(space: SearchSpace, arch: Mapping, num_classes: int, resolution: int) -> ArchStats:
    """Data-free statistics (parameter and FLOP counts) without building a model."""
    return ArchStats(scalars={"num_params": float(space.num_params(arch, num_classes, resolution)),
                              "flops": float(space.flops(arch, num_classes, resolution))})
