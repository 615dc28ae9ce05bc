"""What a statistics pass produces: ``ArchStats``, and the settings it is computed with.

The families themselves, and the passes that compute them, are registered in
``autoprox.stats.passes``; ``autoprox.stats.extract`` runs them on one arch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from autoprox.core.config import check_ranges
from autoprox.spaces.base import ARCH_SCALARS

# scalar statistics of every arch (loss: from the base pass; ARCH_SCALARS: SearchSpace.arch_scalars)
SCALARS = ("num_params", "flops", "loss") + ARCH_SCALARS
AUTOPROX_INPUTS = {"t1": "gelu_input", "t1g": "gelu_input_grad", "t2": "linear_input",
                   "t2g": "linear_input_grad", "t3": "weight", "t3g": "weight_grad",
                   "t4": "norm_output", "t4g": "norm_output_grad"}  # Auto-Prox's CNN input names


@dataclass(frozen=True)
class StatsConfig:
    act_samples: int = 4
    act_tokens: int = 8
    weight_rows: int = 32  # output units kept of each weight-shaped tensor (per-layer reductions use all)
    dtype: Literal["float16", "float32"] = "float16"
    drop_path: float = 0.1
    grad_groups: int = 4

    def __post_init__(self) -> None:
        check_ranges(self, "stats", {"act_samples": (1, None), "act_tokens": (1, None), "weight_rows": (1, None), "grad_groups": (2, None),
                                     "drop_path": (0, 1, "[)")})
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32, got {self.dtype!r}")


@dataclass
class ArchStats:
    """Statistics of one arch: family -> per-layer float32 tensors, and scalars."""

    tensors: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    kinds: dict[str, list[str]] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)

    def merge(self, other: "ArchStats") -> "ArchStats":
        """Take ``other``'s families, kinds and scalars (its values win); returns self."""
        self.tensors.update(other.tensors)
        self.kinds.update(other.kinds)
        self.scalars.update(other.scalars)
        return self

    def get(self, family: str) -> list[torch.Tensor]:
        if family not in self.tensors:
            raise KeyError(f"statistic {family!r} not available; have {sorted(self.tensors)}")
        return self.tensors[family]
