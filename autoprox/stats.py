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

Optional passes run only when a proxy needs their families, and are cached apart
(their own key), so the base statistics never pay for them:

| family       | pass        | what                                                          |
|--------------|-------------|---------------------------------------------------------------|
| hessian_grad | hessian     | GraSP's Hg per weight layer (a double-backward pass)          |
| grad_snr     | grad_groups | ZiCo's mean|g| / std g over ``grad_groups`` splits of the batch |
| teacher_gap  | teacher     | TVT's attention-map gap to a ConvNet teacher (one value; needs |
|              |             | ``ScoringConfig.teacher``; see ``autoprox.teacher``)           |
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping

import torch

from . import collect as _collect
from .collect import OPTIONAL_PASSES, run_passes
from .spaces import SearchSpace

WEIGHT_FAMILIES = ("weight", "weight_grad", "virtual_grad")
ACT_FAMILIES = ("linear_input", "gelu_input", "norm_output", "attention")
MATRIX_FAMILIES = ("naswot_kernel", "input_grad_corr")
BASE_FAMILIES = (WEIGHT_FAMILIES + tuple(f for a in ACT_FAMILIES for f in (a, a + "_grad"))
                 + MATRIX_FAMILIES + ("fisher",))
TEACHER_PASS = "teacher"  # needs ScoringConfig.teacher; run by StatsProvider (autoprox.teacher), not extract()
TEACHER_FAMILIES = ("teacher_gap",)
SINGLE_FAMILIES = MATRIX_FAMILIES + TEACHER_FAMILIES  # one value per arch, not per layer
PASSES: dict[str, tuple[str, ...]] = {"base": BASE_FAMILIES,
                                      **{p: fams for p, (_, fams) in OPTIONAL_PASSES.items()},
                                      TEACHER_PASS: TEACHER_FAMILIES}
FAMILIES = tuple(f for fams in PASSES.values() for f in fams)
MODEL_PASSES = tuple(p for p in PASSES if p != TEACHER_PASS)  # the passes extract() runs
MODEL_FAMILIES = tuple(f for p in MODEL_PASSES for f in PASSES[p])
PASS_FIELDS = {"grad_groups": ("grad_groups",)}  # config fields only that pass depends on
_PASS_CODE = {"base": ("weight_layers", "token_index", "subsample", "Recorder", "_weights", "collect",
                       "virtual_grad"),
              "hessian": ("weight_layers", "_forward", "hessian_pass"),
              "grad_groups": ("weight_layers", "_forward", "grad_groups_pass"),
              TEACHER_PASS: ()}
_PASS_FILES = {TEACHER_PASS: ("teacher.py",)}  # whole files hashed into that pass's code version
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
    grad_groups: int = 4

    def __post_init__(self) -> None:
        if self.act_samples < 1 or self.act_tokens < 1:
            raise ValueError("act_samples and act_tokens must be >= 1")
        if self.grad_groups < 2:
            raise ValueError(f"grad_groups must be >= 2, got {self.grad_groups}")
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


def passes_for(families: Iterable[str]) -> list[str]:
    """The passes (in ``PASSES`` order) that yield ``families``; unknown names raise."""
    fams = set(families)
    unknown = fams - set(FAMILIES)
    if unknown:
        raise KeyError(f"unknown statistic(s) {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    return [p for p, pf in PASSES.items() if fams & set(pf)]


def key_fields(cfg: StatsConfig, pass_name: str) -> dict:
    """The config fields a pass's values depend on (part of its cache key)."""
    other = {f for p, fs in PASS_FIELDS.items() if p != pass_name for f in fs}
    return {k: v for k, v in asdict(cfg).items() if k not in other}


def code_version(pass_name: str = "base") -> str:
    """Hash of the code whose changes alter a pass's values (part of its cache key)."""
    h = hashlib.sha256(torch.__version__.split("+")[0].encode())
    for name in _PASS_CODE[pass_name]:
        h.update(inspect.getsource(getattr(_collect, name)).encode())
    h.update(inspect.getsource(extract).encode())
    for f in sorted((Path(__file__).resolve().parent / "spaces").glob("*.py")):
        h.update(f.read_bytes())
    for name in _PASS_FILES.get(pass_name, ()):
        h.update((Path(__file__).resolve().parent / name).read_bytes())
    return h.hexdigest()[:16]


def extract(space: SearchSpace, arch: Mapping, images: torch.Tensor, labels: torch.Tensor,
            num_classes: int, seed: int, cfg: StatsConfig, device: str | torch.device = "cpu",
            passes: Iterable[str] = ("base",), families: Iterable[str] | None = None) -> ArchStats:
    """Statistics of ``arch`` on the batch from the named passes of one freshly built model;
    ``families`` (default: all) limits the base pass to the work they need (same values)."""
    device = torch.device(device)
    res = images.shape[-1]
    model = space.build(arch, num_classes=num_classes, img_size=res, seed=seed,
                        drop_path=cfg.drop_path).to(device)
    tensors, kinds, scalars = run_passes(model, images.to(device), labels.to(device), seed, cfg.act_samples,
                                         cfg.act_tokens, tuple(passes), cfg.grad_groups,
                                         None if families is None else frozenset(families))
    scalars.update(num_params=float(space.num_params(arch, num_classes, res)),
                   flops=float(space.flops(arch, num_classes, res)))
    return ArchStats(tensors, kinds, scalars)


def meta_stats(space: SearchSpace, arch: Mapping, num_classes: int, resolution: int) -> ArchStats:
    """Data-free statistics (parameter and FLOP counts) without building a model."""
    return ArchStats(scalars={"num_params": float(space.num_params(arch, num_classes, resolution)),
                              "flops": float(space.flops(arch, num_classes, resolution))})
