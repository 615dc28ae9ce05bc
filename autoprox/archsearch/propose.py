"""Candidates of a search: legal, unseen archs inside the windows, by random sampling or by
mutation and crossover of the best so far; and the ranking of scored candidates."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping

from autoprox.archsearch.config import SearchConfig, measure, window_text, within
from autoprox.spaces import SearchSpace

SAMPLE_TRIES = 20000  # draws per random candidate before the window counts as unreachable/exhausted
CHILD_TRIES = 100     # mutation/crossover attempts per child before falling back to a random arch


class _Probe:
    """Ranges of params/FLOPs seen while sampling, for an 'unreachable window' message."""

    def __init__(self) -> None:
        self.lo, self.hi = [math.inf, math.inf], [0.0, 0.0]

    def add(self, p: int, f: int) -> None:
        for i, v in enumerate((p, f)):
            self.lo[i], self.hi[i] = min(self.lo[i], v), max(self.hi[i], v)

    def text(self) -> str:
        return (f"sampled archs have {self.lo[0] / 1e6:.2f}-{self.hi[0] / 1e6:.2f} M params and "
                f"{self.lo[1] / 1e6:.0f}-{self.hi[1] / 1e6:.0f} M FLOPs")


def _candidate(cfg: SearchConfig, space: SearchSpace, arch: Mapping, seen: set[str], origin: str,
               probe: _Probe | None = None) -> dict | None:
    """A proposal record if ``arch`` is unseen and inside the windows (then marked seen)."""
    key = space.key(arch)
    if key in seen:
        return None
    p, f = measure(cfg, space, arch)
    if probe is not None:
        probe.add(p, f)
    if not within(cfg, p, f):
        return None
    seen.add(key)
    return {"arch": space.validate(arch), "num_params": p, "flops": f, "origin": origin}


def _sample_legal(cfg: SearchConfig, space: SearchSpace, rng: random.Random, seen: set[str],
                  first: bool) -> dict | None:
    """Rejection-sample an unseen legal arch; None when the window looks exhausted."""
    probe = _Probe()
    for _ in range(SAMPLE_TRIES):
        c = _candidate(cfg, space, space.sample(rng), seen, "random", probe)
        if c is not None:
            return c
    if first:
        raise ValueError(f"no {cfg.space} arch within {window_text(cfg)} in {SAMPLE_TRIES} samples "
                         f"({probe.text()} at {cfg.num_classes} classes, {cfg.img_size} px); "
                         f"widen --params/--flops")
    return None


def check_reachable(cfg: SearchConfig, space: SearchSpace) -> None:
    """``ValueError`` naming the sampled ranges when no arch of ``space`` falls inside the windows
    (checked before a run makes its folder)."""
    if cfg.params is not None or cfg.flops is not None:
        _sample_legal(cfg, space, random.Random(cfg.seed), set(), first=True)


def _child(cfg: SearchConfig, space: SearchSpace, rng: random.Random, pool: list[dict],
           seen: set[str]) -> dict | None:
    """A legal unseen child of the parent ``pool`` by crossover or mutation, else None."""
    for _ in range(CHILD_TRIES):
        if len(pool) >= 2 and rng.random() < cfg.crossover_prob:
            a, b = rng.sample(pool, 2)
            c = _candidate(cfg, space, space.crossover(a, b, rng), seen, "crossover")
        else:
            c = _candidate(cfg, space, space.mutate(rng.choice(pool), rng, cfg.mutation_prob), seen,
                           "mutation")
        if c is not None:
            return c
    return None


def order_key(minimize: bool) -> Callable[[dict], tuple]:
    """Sort key: best score first, NaN last, ties by candidate index."""
    def key(h: dict) -> tuple:
        s = h["score"]
        bad = s is None or not math.isfinite(s)
        return (bad, 0.0 if bad else (s if minimize else -s), h["index"])
    return key


def ranked(history: list[dict], minimize: bool) -> list[dict]:
    """Candidates with a finite score, best first."""
    return [h for h in sorted(history, key=order_key(minimize))
            if h["score"] is not None and math.isfinite(h["score"])]


@dataclass
class State:
    rng: random.Random
    history: list[dict] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    exhausted: bool = False
    done: bool = False


def propose(cfg: SearchConfig, space: SearchSpace, st: State, n: int,
             pool_from: list[dict] | None) -> list[dict]:
    """Up to ``n`` new candidates; fewer when the (windowed) space is exhausted."""
    if pool_from is not None:  # bench-only: the next labelled archs, in benchmark order
        return [dict(c) for c in pool_from[len(st.history):len(st.history) + n]]
    pool = [h["arch"] for h in ranked(st.history, cfg.minimize)[:cfg.parents]]
    out: list[dict] = []
    for _ in range(n):
        evolve = cfg.strategy == "evolution" and pool and len(st.history) + len(out) >= cfg.population
        c = _child(cfg, space, st.rng, pool, st.seen) if evolve else None
        if c is None:
            c = _sample_legal(cfg, space, st.rng, st.seen, first=not st.history and not out)
        if c is None:
            break
        out.append(c)
    return out
