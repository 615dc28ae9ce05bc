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
from .stats import ArchStats, StatsConfig, code_version, extract, meta_stats, PASSES, passes_for


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
        self._code: dict[str, str] = {}

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            self._batch = make_batch(self.cfg.batch)
        return self._batch

    def key(self, arch: Mapping, pass_name: str = "base") -> str:
        """Cache key of one statistics pass of ``arch``."""
        if pass_name not in self._code:
            self._code[pass_name] = code_version(pass_name)
        c = self.cfg
        return cache_key(self.space_name, self.space.key(arch), self.batch.fingerprint, c.batch.num_classes,
                         c.seed, c.stats, torch.device(c.device).type, self._code[pass_name], pass_name)

    def get(self, arch: Mapping, families: Iterable[str] = ()) -> ArchStats:
        """Statistics of ``arch``: data-free when no family is needed, else the passes that
        yield ``families``, each loaded from the cache or computed (one model build) and stored."""
        arch = self.space.validate(arch)
        c = self.cfg
        out = meta_stats(self.space, arch, c.batch.num_classes, c.batch.resolution)
        parts: dict[str, ArchStats] = {}
        missing = []
        for p in passes_for(families):
            hit = self.cache.load(self.space_name, self.key(arch, p)) if c.use_cache else None
            if hit is None:
                missing.append(p)
            else:
                parts[p] = hit
        if missing:
            b = self.batch
            fresh = extract(self.space, arch, b.images, b.labels, c.batch.num_classes, c.seed, c.stats,
                            c.device, missing)
            for p in missing:
                parts[p] = self._store(arch, p, fresh)
        for s in parts.values():
            out.tensors.update(s.tensors)
            out.kinds.update(s.kinds)
            out.scalars.update(s.scalars)
        return out

    def _store(self, arch: dict, pass_name: str, fresh: ArchStats) -> ArchStats:
        """The families of one pass from ``fresh``, as stored in the cache (if used)."""
        fams = PASSES[pass_name]
        s = ArchStats({f: fresh.tensors[f] for f in fams}, {f: fresh.kinds[f] for f in fams},
                      dict(fresh.scalars) if pass_name == "base" else {})
        if not self.cfg.use_cache:
            return s
        return self.cache.save(self.space_name, self.key(arch, pass_name), s, self.cfg.stats.dtype,
                               {"space": self.space_name, "arch": arch, "seed": self.cfg.seed, "pass": pass_name})


def safe_score(proxy: Proxy, stats: ArchStats) -> float:
    """The proxy's float score; NaN when it raises an arithmetic/shape error."""
    try:
        return float(proxy.score(stats))
    except SCORE_ERRORS:
        return math.nan
