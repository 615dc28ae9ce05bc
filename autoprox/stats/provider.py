"""``StatsProvider``: an arch's statistics from the cache, or computed (and stored).

It owns the proxy batch, the cache and (for passes that need one) the teacher of one
space; backends in ``autoprox.parallel`` map it over architectures.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

import torch

from autoprox.core.config import check_ranges
from autoprox.core.memory import trim_freed_memory
from autoprox.spaces import get_space
from autoprox.stats.base import ArchStats, StatsConfig
from autoprox.stats.batch import Batch, BatchConfig, make_batch
from autoprox.stats.cache import StatsCache, as_stored, cache_key, select
from autoprox.stats.extract import extract, meta_stats
from autoprox.stats.passes import get_pass, passes_for
from autoprox.stats.teacher import NO_TEACHER, TeacherTarget, checksum, teacher_target


EVALUATORS = ("batched", "reference")
# settings a checkpointed run may change when it resumes: where statistics live and how much of them a
# worker holds cannot change a score
RESUME_FREE = ("cache_dir", "use_cache", "gpus_per_worker", "score_memory_mb")


@dataclass(frozen=True)
class ScoringConfig:
    """Everything that defines the statistics an arch is scored from."""

    batch: BatchConfig = field(default_factory=BatchConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    seed: int = 0
    device: str = "cpu"
    cache_dir: str | None = None
    use_cache: bool = True
    teacher: str | None = None  # ConvNet teacher checkpoint for teacher_gap (tvt); see autoprox.stats.teacher
    gpus_per_worker: float | None = None  # Ray: GPUs each worker asks for (None: 1 with cuda, else 0)
    evaluator: str = "batched"  # "batched" (autoprox.proxy.population) or "reference" (per layer and arch)
    score_memory_mb: int | None = None  # statistics a worker keeps packed for scoring (None: 1024 CPU, GPU half)

    def __post_init__(self) -> None:
        check_ranges(self, "scoring", {"gpus_per_worker": (0, None), "seed": (0, None), "score_memory_mb": (0, None)})
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"scoring.evaluator must be one of {', '.join(EVALUATORS)}, got {self.evaluator!r}")

    def resolved(self) -> "ScoringConfig":
        """As a run's ``config.yaml`` records it: the cache folder actually used, not ``None``."""
        return replace(self, cache_dir=str(StatsCache(self.cache_dir).root))


def key_parts(space: str, arch_key: str, batch_fingerprint: str, cfg: ScoringConfig, pass_name: str,
              teacher_sum: str | None = None) -> dict:
    """What one pass's stored values depend on: the parts of its cache key."""
    p = get_pass(pass_name)
    parts = {"space": space, "arch": arch_key, "batch": batch_fingerprint, "classes": cfg.batch.num_classes,
             "seed": cfg.seed, "device": torch.device(cfg.device).type, "pass": p.name, "version": p.version,
             "torch": torch.__version__.split("+")[0], "dtype": cfg.stats.dtype,
             "cfg": {f: getattr(cfg.stats, f) for f in p.fields}}
    if "teacher" in p.needs:
        parts["teacher"] = teacher_sum
    return parts


class StatsProvider:
    """Loads an arch's statistics from the cache, or computes and stores them."""

    def __init__(self, space: str, cfg: ScoringConfig) -> None:
        self.space = get_space(space)
        self.space_name = self.space.name  # a declared space's own name, not its file's path
        self.cfg = cfg
        self.cache = StatsCache(cfg.cache_dir)
        self._batch: Batch | None = None
        self._teacher: TeacherTarget | None = None  # the teacher's map of the batch, built once
        self._teacher_sum: str | None = None

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            self._batch = make_batch(self.cfg.batch)
        return self._batch

    def key(self, arch: Mapping, pass_name: str = "base") -> str:
        """Cache key of one statistics pass of ``arch``."""
        tsum = None
        if "teacher" in get_pass(pass_name).needs:  # the teacher's weights change the values
            if self._teacher_sum is None:
                self._teacher_sum = checksum(self._teacher_path())
            tsum = self._teacher_sum
        return cache_key(key_parts(self.space_name, self.space.key(arch), self.batch.fingerprint, self.cfg,
                                   pass_name, tsum))

    def present(self, arch: Mapping, families: Iterable[str]) -> bool:
        """Whether every pass that yields ``families`` has a whole cache entry on disk (a quick look
        at each entry's length; its crc is checked when it is read)."""
        arch = self.space.validate(arch)
        return self.cfg.use_cache and all(self.cache.whole(self.space_name, self.key(arch, p))
                                          for p in passes_for(families))

    def get(self, arch: Mapping, families: Iterable[str] = ()) -> ArchStats:
        """Statistics of ``arch``: data-free when no family is needed, else the passes that
        yield ``families``, each loaded from the cache or computed (all missing passes on one
        model build) and stored. Without the cache only the work ``families`` need is done;
        either way values go through the stored form, so every path gives one score."""
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
        if missing:
            if torch.device(c.device).type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"{self.space_name}: the {', '.join(missing)} statistics of an arch are not "
                                 f"cached for cuda, and CUDA is not available on this machine to compute them")
            b = self.batch
            lean = None if c.use_cache else families  # a cache entry holds a whole pass
            teacher = self._teacher_target() if any("teacher" in get_pass(p).needs for p in missing) else None
            fresh = extract(self.space, arch, b.images, b.labels, c.batch.num_classes, c.seed, c.stats,
                            c.device, missing, lean, teacher)
            for p in missing:
                parts[p] = self._store(arch, p, fresh)
            del fresh
            trim_freed_memory()  # the pass's freed activations, before the next arch or the scoring
        for s in parts.values():
            out.merge(select(s, families))  # hold only what was asked: a pass's other families are freed
        return out

    def _teacher_path(self) -> str:
        if self.cfg.teacher is None:
            raise ValueError(NO_TEACHER)
        return self.cfg.teacher

    def _teacher_target(self) -> TeacherTarget:
        """The teacher's map of the batch; the teacher runs once per provider."""
        if self._teacher is None:
            self._teacher = teacher_target(self._teacher_path(), self.batch.images, self.cfg.device)
        return self._teacher

    def _store(self, arch: dict, pass_name: str, fresh: ArchStats) -> ArchStats:
        """The families of one pass from ``fresh``, as the cache stores them (quantised to
        ``stats.dtype``), written to the cache when it is used."""
        fams = [f for f in get_pass(pass_name).families if f in fresh.tensors]
        s = ArchStats({f: fresh.tensors[f] for f in fams}, {f: fresh.kinds[f] for f in fams},
                      dict(fresh.scalars) if pass_name == "base" else {})
        meta = {"space": self.space_name, "arch": arch, "seed": self.cfg.seed, "pass": pass_name}
        if not self.cfg.use_cache:
            return as_stored(s, self.cfg.stats.dtype, meta)
        return self.cache.save(self.space_name, self.key(arch, pass_name), s, self.cfg.stats.dtype, meta)
