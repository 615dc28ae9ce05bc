"""The configuration of a search run, its parameter/FLOPs windows and the result record."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from autoprox.core.config import ConfigError
from autoprox.spaces import SearchSpace, get_space
from autoprox.stats.provider import ScoringConfig

_NUM = r"\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)?\s*"


@dataclass(frozen=True)
class SearchConfig:
    """One search run. Windows are (min, max) in millions of parameters / multiply-accumulates
    of the deployed model (``num_classes`` classes, ``img_size`` px input)."""

    proxy: str
    space: str = "autoformer"
    params: tuple[float, float] | None = None
    flops: tuple[float, float] | None = None
    budget: int = 1000
    strategy: Literal["random", "evolution"] = "random"
    top_k: int = 5
    seed: int = 0
    chunk: int = 32
    population: int = 32
    parents: int = 8
    mutation_prob: float = 0.3
    crossover_prob: float = 0.5
    minimize: bool = False
    num_classes: int = 100
    img_size: int = 224
    bench_only: bool = False
    bench: str | None = None
    targets: tuple[str, ...] = ()
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self) -> None:
        for name in ("budget", "top_k", "chunk", "population", "parents", "num_classes", "img_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"search config: {name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"search config: seed must be >= 0, got {self.seed}")
        for name in ("mutation_prob", "crossover_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"search config: {name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("params", "flops"):
            w = getattr(self, name)
            if w is not None and (len(w) != 2 or not 0 <= w[0] <= w[1]):
                raise ConfigError(f"search config: {name} window must be [min, max] with "
                                  f"0 <= min <= max (millions), got {list(w)}")
        get_space(self.space)  # unknown space: error naming the known ones


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a run: the best archs (best first) and every scored candidate."""

    config: SearchConfig
    proxy: str
    top: list[dict]
    history: list[dict]
    exhausted: bool = False
    regret: list[dict] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    restored: int = 0  # candidates read from the checkpoint (--resume), scored by an earlier process

    @property
    def best(self) -> dict:
        return self.top[0]


def parse_window(text: str, what: str = "--params") -> tuple[float, float]:
    """``"4-9"`` (millions) -> (4.0, 9.0); ``"4-"`` / ``"-9"`` leave one side open."""
    m = re.fullmatch(_NUM + "-" + _NUM, text or "")
    if not m or (m.group(1) is None and m.group(2) is None):
        raise ValueError(f"{what} {text!r}: expected MIN-MAX in millions, e.g. 4-9 or 2.5-6")
    lo = float(m.group(1)) if m.group(1) else 0.0
    hi = float(m.group(2)) if m.group(2) else math.inf
    if lo > hi:
        raise ValueError(f"{what} {text!r}: min {lo} is larger than max {hi}")
    return lo, hi


def measure(cfg: SearchConfig, space: SearchSpace, arch: Mapping) -> tuple[int, int]:
    """Analytic (params, FLOPs) of ``arch`` as deployed; no model is built."""
    return (space.num_params(arch, cfg.num_classes, cfg.img_size),
            space.flops(arch, cfg.num_classes, cfg.img_size))


def within(cfg: SearchConfig, n_params: int, n_flops: int) -> bool:
    """Whether counts fall inside the config's windows (bounds inclusive)."""
    return all(w is None or w[0] * 1e6 <= v <= w[1] * 1e6
               for w, v in ((cfg.params, n_params), (cfg.flops, n_flops)))


def window_text(cfg: SearchConfig) -> str:
    parts = [f"{name} {w[0]:g}-{w[1]:g} M" for name, w in (("params", cfg.params), ("FLOPs", cfg.flops))
             if w is not None]
    return ", ".join(parts) or "no window"
