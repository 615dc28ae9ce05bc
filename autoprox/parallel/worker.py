"""``ScoringWorker``: owns a shard of archs of one space, their statistics, and scores
proxy expressions on them. It receives plain data only (archs, family names, expression
strings), never proxy objects or file names, so it runs the same in-process or on any Ray node.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from autoprox.proxy.graph import GraphProxy, parse, score_population
from autoprox.proxy.population import PopulationScorer, scoring_device
from autoprox.stats.base import ArchStats
from autoprox.stats.passes import get_pass
from autoprox.stats.provider import ScoringConfig, StatsProvider


class ScoringWorker:
    """Owns a shard of archs of one space and their statistics (in memory)."""

    def __init__(self, space: str, cfg: ScoringConfig, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        self.provider = StatsProvider(space, cfg)
        self.held: list[ArchStats] = []
        self._scorer: PopulationScorer | None = None  # the batched evaluator over ``held``, built at first use

    def load(self, archs: list[dict], families: Sequence[str] | None = None,
             on_arch: Callable[[], None] | None = None) -> int:
        """Compute or load the statistics of ``archs`` (replacing held ones); their count.
        ``families`` default: the base pass's; ``on_arch`` is called after each arch."""
        fams = list(get_pass("base").families) if families is None else list(families)
        self.held, self._scorer = [], None
        for a in archs:
            self.held.append(self.provider.get(a, fams))
            if on_arch is not None:
                on_arch()
        return len(self.held)

    def extend(self, archs: list[dict], families: Sequence[str] | None = None) -> int:
        """Like ``load``, but adds to the held archs (a shard loaded in steps); the count held."""
        fams = list(get_pass("base").families) if families is None else list(families)
        self.held.extend(self.provider.get(a, fams) for a in archs)
        self._scorer = None
        return len(self.held)

    def warm(self, archs: list[dict], families: Sequence[str]) -> int:
        """Compute and cache the statistics of ``archs`` without holding them; their count."""
        for a in archs:
            self.provider.get(a, list(families))
        return len(archs)

    def score(self, exprs: list[str], first: int | None = None) -> list[list[float]]:
        """(archs x expressions) scores on the held archs (only the ``first`` few: a probe);
        NaN where an expression fails on an arch. Expressions share common sub-expressions; the
        ``batched`` evaluator runs each op over many archs at once on the scoring device."""
        cfg = self.provider.cfg
        if cfg.evaluator == "reference":
            proxies = [GraphProxy(e, parse(e)) for e in exprs]
            return [score_population(proxies, s) for s in self.held[:first]]
        if self._scorer is None:
            memory = None if cfg.score_memory_mb is None else cfg.score_memory_mb << 20
            share = 1.0 if cfg.gpus_per_worker in (None, 0) else cfg.gpus_per_worker
            self._scorer = PopulationScorer(self.held, scoring_device(cfg.device), resident_bytes=memory, share=share)
        return self._scorer.score(exprs, first).tolist()

    def drop(self) -> None:
        """Forget the held statistics."""
        self.held, self._scorer = [], None
