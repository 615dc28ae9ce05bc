"""Scoring from the statistics cache vs the naive loop, and a population vs single scorings.

1. ``autoprox_paper`` (2 inputs, 4 unary, 1 binary) on the benchmark archs of a space:
   - cached: statistics loaded once (load time reported apart), then the proxy scored;
   - naive: for each arch, build the model and run one plain forward+backward at the same
     batch (no statistics recorded at all: a lower bound of any naive loop), timed on the
     first ``--naive-archs`` archs and scaled to all of them.
2. ``--population`` random free-graph proxies (``VariationConfig()``, seed 0), and with
   ``--from-run DIR`` an evolved population (its checkpoint), scored in one pass (shared
   sub-expressions, one decode per statistic) vs one call per proxy.

    python benchmarks/bench_scoring.py --space autoformer --threads 1
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from autoprox.data.benchmark import load_archs
from autoprox.parallel.backends import SerialBackend
from autoprox.stats.provider import ScoringConfig, StatsProvider
from autoprox.discovery.variation import VariationConfig, random_genome, to_expr
from autoprox.proxy.zoo import get_proxy


def naive_seconds(space: str, archs: list[dict], scoring: ScoringConfig) -> float:
    """Build + one plain train-mode forward/backward per arch (seconds, summed)."""
    prov = StatsProvider(space, scoring)
    b, c = prov.batch, scoring.batch
    t0 = time.perf_counter()
    for a in archs:
        model = prov.space.build(a, num_classes=c.num_classes, img_size=c.resolution, seed=scoring.seed)
        model.train()
        F.cross_entropy(model(b.images), b.labels).backward()
    return time.perf_counter() - t0


def timed(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="autoformer")
    ap.add_argument("--naive-archs", type=int, default=5)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--from-run", help="also time the population of this evolve run folder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scoring = ScoringConfig()
    _, archs, _ = load_archs(args.space)
    paper = str(get_proxy("autoprox_paper").expr)  # type: ignore[attr-defined]
    be = SerialBackend(args.space, scoring)
    t0 = time.perf_counter()
    be.load(archs, None)
    load = time.perf_counter() - t0
    cached = timed(lambda: be.score([paper]), args.reps)
    naive = naive_seconds(args.space, archs[: args.naive_archs], scoring) * len(archs) / args.naive_archs
    n = len(archs)
    print(f"## {args.space}: autoprox_paper on {n} archs (batch {scoring.batch.size}x{scoring.batch.resolution}, "
          f"{args.threads} thread)")
    print(f"cached scoring {cached:.2f} s (+ one-off cache load {load:.1f} s); naive loop {naive:.0f} s "
          f"(measured on {args.naive_archs} archs, scaled x{n / args.naive_archs:.0f})")
    print(f"ratio naive / cached = {naive / cached:.0f}x; including the load: {naive / (cached + load):.0f}x")
    rng, var = random.Random(0), VariationConfig()
    pops = {"random": [str(to_expr(random_genome(rng, var), var)) for _ in range(args.population)]}
    if args.from_run:  # an evolved population: children share sub-expressions with their parents
        ck = json.loads((Path(args.from_run) / "checkpoint.json").read_text())
        pops["evolved"] = [g[0] for g in ck["population"] + ck["hall_of_fame"]][: args.population]
    for kind, pop in pops.items():
        together = timed(lambda: be.score(pop), 1)
        singles = timed(lambda: [be.score([e]) for e in pop], 1)
        print(f"{kind} population of {len(pop)}: together {together:.1f} s, {len(pop)} single scorings "
              f"{singles:.1f} s, ratio {singles / together:.2f}x")


if __name__ == "__main__":
    main()
