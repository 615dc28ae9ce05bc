"""An evolution run's settings: ``EvolveConfig`` (``runs/<name>.yaml``), its pick rules and seeds."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoprox.core.config import ConfigError, check_ranges, config_diff, load_config
from autoprox.discovery.objective import ObjectiveConfig, families_of
from autoprox.discovery.variation import VariationConfig, to_proxy, validate
from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.genotype import to_genotype
from autoprox.proxy.spec import resolve, resolve_graph
from autoprox.stats.provider import RESUME_FREE as SCORING_RESUME_FREE

MODES = ("paper", "generational")
PICK_RULES = {"val": "on validation", "train_val": "on train and validation together"}  # ``pick``: how it reads
PICKS = tuple(PICK_RULES)
RESUME_FREE = tuple(f"objective.scoring.{k}" for k in SCORING_RESUME_FREE)  # may change when a run resumes


@dataclass(frozen=True)
class EvolveConfig:
    """One evolution run (``runs/<name>.yaml``)."""

    mode: str = "generational"
    seed: int = 0
    population: int = 40
    steps: int = 20                 # generations (generational) or iterations (paper)
    offspring: int = 40             # generational: children per generation
    cxpb: float = 0.4               # generational: probability a child comes from crossover
    pool_ratio: float = 0.25        # paper: sampled fraction of the population
    top_k: int = 5                  # paper: parents drawn from the pool's top k
    margin: float = 0.0             # paper: elitism margin a child must clear
    mutants: int = 8                # paper: children scored together per try
    max_tries: int = 4              # paper: tries before the iteration gives up
    hall_of_fame: int = 20
    pick: str = "val"               # the rule for the run's pick among the hall of fame (PICKS)
    repair: int = 3                 # rounds of redrawing candidates that fail the probe (0: off)
    probe_archs: int = 3            # archs per worker (per space) a candidate is probed on first
    seed_proxies: tuple[str, ...] = ()  # genomes (expressions / genotype genes) to start from
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    variation: VariationConfig = field(default_factory=VariationConfig)

    def __post_init__(self) -> None:
        for key, allowed in (("mode", MODES), ("pick", PICKS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"evolve config: {key} must be one of {allowed}, got {getattr(self, key)!r}")
        check_ranges(self, "evolve config", {
            "population": (2, None), "steps": (0, None), "offspring": (1, None), "cxpb": (0, 1),
            "pool_ratio": (0, 1, "(]"), "top_k": (1, None), "margin": (-2, 2), "mutants": (1, None),
            "max_tries": (1, None), "hall_of_fame": (1, None)})
        check_ranges(self, "evolve config", {"repair": (0, None), "probe_archs": (2, None), "seed": (0, None)})


def load_evolve_config(path: str | Path) -> EvolveConfig:
    return load_config(EvolveConfig, path)


def config_changes(saved: Any, cfg: EvolveConfig) -> list[str]:
    """How a checkpoint's config differs from ``cfg``; keys added since it was written take their
    defaults (a run checkpointed before ``pick`` existed resumes with ``pick: val``)."""
    return config_diff(EvolveConfig, saved, cfg, RESUME_FREE)


def seed_genomes(cfg: EvolveConfig) -> list[list[str]]:
    """The genomes of ``seed_proxies`` (zoo names, proxy files, expressions or genotypes)."""
    out = []
    for spec in cfg.seed_proxies:
        try:
            out.append(validate(_genome(spec, cfg.variation), cfg.variation))
        except (ValueError, KeyError) as e:
            msg = e.args[0] if e.args else e
            raise ConfigError(f"seed_proxies: {spec!r}: {msg}") from None
    return out


def run_families(cfg: EvolveConfig) -> list[str]:
    """The statistic families a run loads: those its leaves read, and those its seed proxies read
    (a seed such as ``jacov`` may read a statistic that variation does not offer as a leaf)."""
    var = cfg.variation
    seeds = set().union(*(to_proxy(g, var).families for g in seed_genomes(cfg)))
    return families_of([*var.leaves, *var.single_leaves, *sorted(seeds)])


def _genome(spec: str, var: VariationConfig) -> list[str]:
    """A seed proxy as a genome of ``var.structure`` (a fused seed needs ``max_parts`` parts and
    the run's ``fusion``)."""
    p = resolve(spec)
    if (isinstance(p, FusedProxy) and var.structure == "free" and len(p.parts) <= var.max_parts
            and p.fusion == var.fusion):
        return sorted(str(q.expr) for q in p.parts)
    expr = resolve_graph(spec, "seed proxy").expr
    if var.structure == "free":
        return [str(expr)]
    text = to_genotype(expr)
    if text is None:
        raise ConfigError(f"seed proxy {spec!r} does not have the Auto-Prox tree shape")
    m = re.match(r"INPUT:\(([^)]*)\)TREE:\(([^)]*)\)BINARY:\(([^)]*)\)", text)
    assert m is not None
    return [*(x.strip() for x in m[1].split(",")), *m[2].split("|"), m[3]]
