"""Fused proxies: per-arch component proxies combined across the archs scored together.

A fused proxy has ``name``, ``families``, ``parts`` (graph proxies, each scored per arch
like any proxy) and ``combine(matrix)``: a (parts x archs) score matrix -> (archs,) scores.
Its score of an arch depends on the other archs (rank-sum), so backends score the parts
on the workers and fuse on the driver over all archs of the call (``parallel``).
An arch with NaN in any part scores NaN; the other archs are ranked among themselves.
Fusions are registered by name (``@register_fusion``).
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
from typing import Callable

import numpy as np
import torch

from autoprox.proxy import fusecore
from autoprox.proxy.graph import GraphProxy
from primitives.registry import Registry

Fusion = Callable[[np.ndarray], np.ndarray]
_FUSIONS: Registry[Fusion] = Registry("fusion")


def register_fusion(name: str) -> Callable[[Fusion], Fusion]:
    """Decorator adding a (parts x archs) -> (archs,) function; duplicates raise."""
    return _FUSIONS.register(name)


def get_fusion(name: str) -> Fusion:
    return _FUSIONS.get(name)


def list_fusions() -> list[str]:
    return _FUSIONS.names()


def _numpy(fn: Callable[[torch.Tensor], torch.Tensor]) -> Fusion:
    """A ``fusecore`` fusion on numpy matrices."""
    def fusion(matrix: np.ndarray) -> np.ndarray:
        return fn(torch.as_tensor(np.asarray(matrix, dtype=np.float64))).numpy()
    fusion.__doc__ = fn.__doc__
    return fusion


rank_sum = register_fusion("rank_sum")(_numpy(fusecore.rank_sum))
sum_of_zscores = register_fusion("sum_of_zscores")(_numpy(fusecore.sum_of_zscores))
log_rank_sum = register_fusion("log_rank_sum")(_numpy(fusecore.log_rank_sum))


def parse_fused(text: str, name: str | None = None, description: str = "") -> "FusedProxy | None":
    """The fused proxy of a ``fusion[expr | expr ...]`` text; None if ``text`` is not of that form."""
    head, sep, rest = text.strip().partition("[")
    if not sep or not rest.endswith("]") or head.strip() not in _FUSIONS:
        return None
    parts = [p.strip() for p in rest[:-1].split("|")]
    graphs = tuple(GraphProxy.from_text(f"part{i}", p) for i, p in enumerate(parts))
    return FusedProxy(name or "", graphs, head.strip(), description)


@dataclass(frozen=True)
class FusedProxy:
    """Graph-proxy ``parts`` fused across archs by the registered ``fusion``; an empty ``name`` is
    its canonical text (``fusion[part | part]``)."""

    name: str
    parts: tuple[GraphProxy, ...]
    fusion: str = "rank_sum"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"fused proxy {self.name!r} needs at least one part")
        get_fusion(self.fusion)  # unknown fusion: error naming the known ones
        if not self.name:
            object.__setattr__(self, "name", self.text)

    @property
    def families(self) -> frozenset[str]:
        return frozenset().union(*(p.families for p in self.parts))

    fused = True  # its score of an arch depends on the other archs scored with it

    @property
    def text(self) -> str:
        """Canonical text, ``fusion[part | part]`` (parts sorted: fusions are symmetric);
        ``autoprox.proxy.spec.resolve`` reads it back."""
        return f"{self.fusion}[{' | '.join(sorted(str(p.expr) for p in self.parts))}]"

    def negated(self) -> "FusedProxy":
        """The same proxy ranking archs the other way round (every part negated)."""
        return FusedProxy(self.name, tuple(p.negated() for p in self.parts), self.fusion, self.description)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def combine(self, matrix: np.ndarray) -> np.ndarray:
        """(parts x archs) part scores -> (archs,) fused scores; NaN in any part -> NaN."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape[0] != len(self.parts):
            raise ValueError(f"{self.name}: expected {len(self.parts)} part rows, got {m.shape[0]}")
        return get_fusion(self.fusion)(m)
