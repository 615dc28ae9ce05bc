"""Population scoring: the batched evaluator against the per-layer reference, in one run.

Loads the statistics of the first ``--archs`` archs of a benchmark (from the cache: fill it first
with ``autoprox stats``), draws ``--population`` genomes from a run config's variation settings
(seed 0; a fused genome is one evaluation) and scores them with both evaluators on the same held
statistics. The batched evaluator is timed cold (its first call packs the statistics) and warm
(packs resident, as in every later generation); its bytes read per evaluation (packed leaves the
population reads, divided by the population) are set against the device's bandwidth, measured
here by summing a 256 MiB tensor.

    python benchmarks/bench_population.py --space autoformer-tiny --bench ../shared/ood-vit-nas/tiny.json \\
        --archs 700 --population 64 [--device cuda] [--threads 1]
"""
from __future__ import annotations

import argparse
import random
import resource
import time

import torch
import yaml

from autoprox.data.benchmark import load_archs
from autoprox.discovery.variation import VariationConfig, random_genome
from autoprox.parallel.worker import ScoringWorker
from autoprox.proxy.graph import DATA_FREE, GraphProxy, leaves, parse, score_population
from autoprox.proxy.population import PopulationScorer, family_bytes
from autoprox.stats.provider import ScoringConfig


def bandwidth(device: str) -> float:
    """Bytes/s of a plain reduction over 256 MiB on ``device`` (best of 5)."""
    x = torch.ones(64 << 20, device=device)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def population(config: str, n: int) -> list[list[str]]:
    var = yaml.safe_load(open(config))["variation"]
    cfg = VariationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in var.items()})
    rng = random.Random(0)
    return [random_genome(rng, cfg) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="autoformer-tiny")
    ap.add_argument("--bench", help="benchmark file (default: the space's shipped one)")
    ap.add_argument("--config", default="runs/ood_tiny.yaml", help="run config whose variation draws the genomes")
    ap.add_argument("--archs", type=int, default=700)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="scoring device of the batched evaluator")
    ap.add_argument("--stats-device", default="cpu", help="device the statistics are computed on (their cache key)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm-reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    genomes = population(args.config, args.population)
    exprs = list(dict.fromkeys(p for g in genomes for p in g))
    families = sorted(set().union(*(leaves(parse(e)) for e in exprs)) - DATA_FREE)
    _, archs, _ = load_archs(args.space, args.bench, limit=args.archs)
    worker = ScoringWorker(args.space, ScoringConfig(device=args.stats_device))
    t0 = time.perf_counter()
    worker.load(archs, families)
    print(f"## {args.space}: {len(archs)} archs, {len(genomes)} genomes ({len(exprs)} part expressions, "
          f"{len(families)} families), {args.threads} thread(s), batched on {args.device}")
    print(f"statistics loaded from the cache in {time.perf_counter() - t0:.1f} s")

    scorer = PopulationScorer(worker.held, args.device)
    t0 = time.perf_counter()
    batched = scorer.score(exprs)
    _sync(args.device)
    cold = time.perf_counter() - t0
    warm = float("inf")
    for _ in range(args.warm_reps):
        t0 = time.perf_counter()
        scorer.score(exprs)
        _sync(args.device)
        warm = min(warm, time.perf_counter() - t0)
    read = sum(family_bytes(s, f) for s in worker.held for f in families)

    proxies = [GraphProxy(e, parse(e)) for e in exprs]
    t0 = time.perf_counter()
    ref = [score_population(proxies, s) for s in worker.held]
    slow = time.perf_counter() - t0
    torch_ref = torch.tensor(ref, dtype=torch.float64)
    close = torch.isclose(torch.from_numpy(batched), torch_ref, rtol=1e-4, atol=0, equal_nan=True)
    n = len(genomes)
    bw = bandwidth(args.device)
    per_eval = read / n
    print(f"batched: cold {cold:.2f} s ({n / cold:.1f} evaluations/s, packing included), warm {warm:.3f} s; "
          f"resident {scorer.resident_nbytes / 2**20:.0f} MiB")
    print(f"reference: {slow:.1f} s; scores equal to rel 1e-4 on {close.float().mean():.4f} of (arch, expression)")
    print(f"bytes read per evaluation {per_eval / 2**20:.2f} MiB; device bandwidth {bw / 1e9:.1f} GB/s "
          f"-> bound {bw / max(per_eval, 1):.0f} evaluations/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print(f"evaluations/s: {n / warm:.1f} (reference {n / slow:.2f}, ratio {slow / warm:.1f})")


if __name__ == "__main__":
    main()
