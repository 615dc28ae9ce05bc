"""Scores of proxies on architectures, from cached statistics.

``StatsProvider`` owns the batch and the cache for one space; backends in
``parallel`` map it over architectures. A proxy that fails on an arch scores NaN;
whether NaN makes the proxy invalid is decided in ``fitness``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

import torch

from .batch import Batch, BatchConfig, make_batch
from .cache import StatsCache, cache_key
from .spaces import get_space
from .fitness import SCORE_ERRORS
from .stats import ArchStats, StatsConfig, code_version, extract, meta_stats


class Proxy(Protocol):
    """What scoring needs of a proxy: a name, the statistic families, a scorer."""

    name: str

    @property
    def families(self) -> frozenset[str]: ...

    def score(self, stats: ArchStats) -> float: ...


@dataclass(frozen=True)
class ScoringConfig:
    """Everything that defines the statistics an arch is scored from."""

    batch: BatchConfig = field(default_factory=BatchConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    seed: int = 0
    device: str = "cpu"
    cache_dir: str | None = None
    use_cache: bool = True


class StatsProvider:
    """Loads an arch's statistics from the cache, or computes and stores them."""

    def __init__(self, space: str, cfg: ScoringConfig) -> None:
        self.space_name = space
        self.space = get_space(space)
        self.cfg = cfg
        self.cache = StatsCache(cfg.cache_dir)
        self._batch: Batch | None = None
        self._code: str | None = None

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            self._batch = make_batch(self.cfg.batch)
        return self._batch

    def key(self, arch: Mapping) -> str:
        if self._code is None:
            self._code = code_version()
        c = self.cfg
        return cache_key(self.space_name, self.space.key(arch), self.batch.fingerprint,
                         c.batch.num_classes, c.seed, c.stats, torch.device(c.device).type, self._code)

    def get(self, arch: Mapping, families: Iterable[str] = ()) -> ArchStats:
        """Statistics of ``arch``; data-free when no family is needed."""
        arch = self.space.validate(arch)
        if not set(families):
            return meta_stats(self.space, arch, self.cfg.batch.num_classes, self.cfg.batch.resolution)
        key = self.key(arch)
        if self.cfg.use_cache:
            hit = self.cache.load(self.space_name, key)
            if hit is not None:
                return hit
        b, c = self.batch, self.cfg
        stats = extract(self.space, arch, b.images, b.labels, c.batch.num_classes, c.seed, c.stats, c.device)
        if c.use_cache:
            return self.cache.save(self.space_name, key, stats, c.stats.dtype,
                                   {"space": self.space_name, "arch": arch, "seed": c.seed})
        return stats


def safe_score(proxy: Proxy, stats: ArchStats) -> float:
    """The proxy's float score; NaN when it raises an arithmetic/shape error."""
    try:
        return float(proxy.score(stats))
    except SCORE_ERRORS:
        return math.nan
