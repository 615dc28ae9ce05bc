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


@register_fusion("weighted_rank")
def weighted_rank(matrix: np.ndarray, weights: tuple[float, ...] = ()) -> np.ndarray:
    """Sum over parts of weight x rank / n among the n NaN-free archs (``fusecore.weighted_rank``)."""
    return fusecore.weighted_rank(torch.as_tensor(np.asarray(matrix, dtype=np.float64)), weights).numpy()


def _weights(head: str) -> tuple[str, tuple[float, ...]]:
    """``weighted_rank(0.5, -1)`` -> ("weighted_rank", (0.5, -1.0)); a head without weights as is."""
    name, sep, rest = head.partition("(")
    if not sep:
        return head, ()
    if not rest.endswith(")"):
        raise ValueError(f"fusion {head!r}: weights must close with ')'")
    try:
        return name.strip(), tuple(float(x) for x in rest[:-1].split(","))
    except ValueError:
        raise ValueError(f"fusion {head!r}: weights must be numbers") from None


def parse_fused(text: str, name: str | None = None, description: str = "") -> "FusedProxy | None":
    """The fused proxy of a ``fusion[expr | expr ...]`` text; None if ``text`` is not of that form."""
    head, sep, rest = text.strip().partition("[")
    if not sep or not rest.endswith("]") or head.strip().partition("(")[0].strip() not in _FUSIONS:
        return None
    fusion, weights = _weights(head.strip())
    parts = [p.strip() for p in rest[:-1].split("|")]
    graphs = tuple(GraphProxy.from_text(f"part{i}", p) for i, p in enumerate(parts))
    return FusedProxy(name or "", graphs, fusion, description, weights)


@dataclass(frozen=True)
class FusedProxy:
    """Graph-proxy ``parts`` fused across archs by the registered ``fusion``; an empty ``name`` is
    its canonical text (``fusion[part | part]``)."""

    name: str
    parts: tuple[GraphProxy, ...]
    fusion: str = "rank_sum"
    description: str = ""
    weights: tuple[float, ...] = ()  # one per part, for a weighted fusion (``fusecore.WEIGHTED``) only

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"fused proxy {self.name!r} needs at least one part")
        get_fusion(self.fusion)  # unknown fusion: error naming the known ones
        weighted = self.fusion in fusecore.WEIGHTED
        if weighted != bool(self.weights) or (weighted and len(self.weights) != len(self.parts)):
            raise ValueError(f"fused proxy {self.name!r}: fusion {self.fusion!r} takes "
                             + (f"one weight per part ({len(self.parts)}), got {len(self.weights)}" if weighted
                                else "no weights"))
        if not all(np.isfinite(self.weights)):
            raise ValueError(f"fused proxy {self.name!r}: weights must be finite")
        if weighted:  # canonical order: parts sorted, each keeping its weight
            pairs = sorted(zip(self.parts, self.weights), key=lambda pw: (str(pw[0].expr), float(pw[1])))
            object.__setattr__(self, "parts", tuple(p for p, _ in pairs))
            object.__setattr__(self, "weights", tuple(float(w) for _, w in pairs))
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
        if self.weights:
            return (f"{self.fusion}({', '.join(repr(w) for w in self.weights)})"
                    f"[{' | '.join(str(p.expr) for p in self.parts)}]")
        return f"{self.fusion}[{' | '.join(sorted(str(p.expr) for p in self.parts))}]"

    def negated(self) -> "FusedProxy":
        """The same proxy ranking archs the other way round (every part negated; a weighted one's
        weights negated instead)."""
        if self.weights:
            return FusedProxy(self.name, self.parts, self.fusion, self.description, tuple(-w for w in self.weights))
        return FusedProxy(self.name, tuple(p.negated() for p in self.parts), self.fusion, self.description)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    reads_arch = False  # its score comes from its parts alone

    def combine(self, matrix: np.ndarray, archs: object = None) -> np.ndarray:
        """(parts x archs) part scores -> (archs,) fused scores; NaN in any part -> NaN (``archs`` unused)."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape[0] != len(self.parts):
            raise ValueError(f"{self.name}: expected {len(self.parts)} part rows, got {m.shape[0]}")
        return get_fusion(self.fusion)(m, self.weights) if self.weights else get_fusion(self.fusion)(m)
