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
from .cache import StatsCache, cache_key, select
from .spaces import get_space
from .fitness import SCORE_ERRORS
from .stats import ArchStats, StatsConfig, code_version, extract, meta_stats, PASSES, TEACHER_PASS, passes_for
from .teacher import NO_TEACHER, TeacherTarget, checksum, extract_teacher_gap, teacher_target


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
    teacher: str | None = None  # ConvNet teacher checkpoint for teacher_gap (tvt); see autoprox.teacher


class StatsProvider:
    """Loads an arch's statistics from the cache, or computes and stores them."""

    def __init__(self, space: str, cfg: ScoringConfig) -> None:
        self.space_name = space
        self.space = get_space(space)
        self.cfg = cfg
        self.cache = StatsCache(cfg.cache_dir)
        self._batch: Batch | None = None
        self._code: dict[str, str] = {}
        self._teacher: TeacherTarget | None = None  # the teacher's map of the batch, built once

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            self._batch = make_batch(self.cfg.batch)
        return self._batch

    def key(self, arch: Mapping, pass_name: str = "base") -> str:
        """Cache key of one statistics pass of ``arch``."""
        if pass_name not in self._code:
            code = code_version(pass_name)
            if pass_name == TEACHER_PASS:  # the teacher's weights change the values: its checksum joins the key
                code += ":" + checksum(self._teacher_path())
            self._code[pass_name] = code
        c = self.cfg
        return cache_key(self.space_name, self.space.key(arch), self.batch.fingerprint, c.batch.num_classes,
                         c.seed, c.stats, torch.device(c.device).type, self._code[pass_name], pass_name)

    def get(self, arch: Mapping, families: Iterable[str] = ()) -> ArchStats:
        """Statistics of ``arch``: data-free when no family is needed, else the passes that
        yield ``families``, each loaded from the cache or computed (one model build; the teacher
        pass, which also needs the teacher, builds its own) and stored. Without the cache only
        the work ``families`` need is done (same values, a fraction of the time for a few)."""
        families = frozenset(families)
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
        model_passes = [p for p in missing if p != TEACHER_PASS]
        if model_passes:
            b = self.batch
            lean = None if c.use_cache else families  # a cache entry holds a whole pass
            fresh = extract(self.space, arch, b.images, b.labels, c.batch.num_classes, c.seed, c.stats,
                            c.device, model_passes, lean)
            for p in model_passes:
                parts[p] = self._store(arch, p, fresh)
        if TEACHER_PASS in missing:
            parts[TEACHER_PASS] = self._store(arch, TEACHER_PASS, self._teacher_pass(arch))
        for s in parts.values():
            s = select(s, families)  # hold only what was asked: a pass's other families are freed
            out.tensors.update(s.tensors)
            out.kinds.update(s.kinds)
            out.scalars.update(s.scalars)
        return out

    def _teacher_path(self) -> str:
        if self.cfg.teacher is None:
            raise ValueError(NO_TEACHER)
        return self.cfg.teacher

    def _teacher_pass(self, arch: dict) -> ArchStats:
        """``teacher_gap`` of ``arch``; the teacher runs once per provider (its map is kept)."""
        c, b = self.cfg, self.batch
        if self._teacher is None:
            self._teacher = teacher_target(self._teacher_path(), b.images, c.device)
        return extract_teacher_gap(self.space, arch, b.images, c.batch.num_classes, c.seed, c.stats,
                                   self._teacher, c.device)

    def _store(self, arch: dict, pass_name: str, fresh: ArchStats) -> ArchStats:
        """The families of one pass from ``fresh``, as stored in the cache (if used)."""
        fams = PASSES[pass_name]
        if not self.cfg.use_cache:  # lean: only what was asked; a cache entry must hold the whole pass
            fams = tuple(f for f in fams if f in fresh.tensors)
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
