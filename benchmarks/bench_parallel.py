"""Scoring throughput of the backends: serial vs Ray with 1 and 2 workers.

A population of random-ish expressions ``AGG(REDUCE(OP(STAT)))`` (unary ops x a few
statistics) is scored on the first N PiT benchmark archs, whose statistics are
computed once into a cache first; each backend then loads them from the cache and
scores the population ``--reps`` times (one thread per worker).

    PYTHONPATH=. python benchmarks/bench_parallel.py --archs 20 --batch-size 8 --resolution 64
"""
from __future__ import annotations

import argparse
import itertools
import random
import tempfile
import time

import numpy as np
import primitives
import ray

from autoprox.stats.batch import BatchConfig
from autoprox.data.benchmark import load_benchmark
from autoprox.parallel.backends import Backend, RayBackend, SerialBackend
from autoprox.stats.provider import ScoringConfig

STATS = ("weight", "weight_grad", "linear_input", "norm_output_grad")
AGGREGATES = ("agg_mean", "agg_sum")
REDUCERS = ("to_mean_scalar", "to_std_scalar")


def population(n: int, seed: int) -> list[str]:
    """``n`` distinct expressions drawn from AGG x REDUCE x unary op x STAT."""
    combos = itertools.product(AGGREGATES, REDUCERS, primitives.list_ops("unary"), STATS)
    exprs = [f"{a}({r}({op}({s})))" for a, r, op, s in combos]
    return random.Random(seed).sample(exprs, min(n, len(exprs)))


def measure(backend: Backend, archs: list[dict], exprs: list[str], reps: int) -> tuple[float, list[float], np.ndarray]:
    """Load time, per-rep scoring times, and the score matrix."""
    t = time.perf_counter()
    backend.load(archs)
    load_s = time.perf_counter() - t
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        scores = backend.score(exprs)
        times.append(time.perf_counter() - t)
    return load_s, times, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--proxies", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None, help="statistics cache (default: a temporary dir)")
    args = ap.parse_args()
    archs = load_benchmark("pit").archs[: args.archs]
    exprs = population(args.proxies, args.seed)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="bench_parallel_")
    cfg = ScoringConfig(batch=BatchConfig(size=args.batch_size, resolution=args.resolution), cache_dir=cache_dir)
    t = time.perf_counter()
    SerialBackend("pit", cfg, threads=1).load(archs)
    print(f"{len(archs)} PiT archs, {len(exprs)} proxies, batch {args.batch_size}x{args.resolution}; "
          f"statistics into the cache in {time.perf_counter() - t:.1f} s")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = [("serial", lambda: SerialBackend("pit", cfg, threads=1)),
            ("ray x1", lambda: RayBackend("pit", cfg, workers=1)),
            ("ray x2", lambda: RayBackend("pit", cfg, workers=2))]
    print(f"{'backend':8} {'load s':>7} {'first s':>8} {'best s':>7} {'proxies/s':>10} {'same':>5}")
    reference = None
    for name, make in runs:
        backend = make()
        load_s, times, scores = measure(backend, archs, exprs, args.reps)
        backend.close()
        reference = scores if reference is None else reference
        same = np.array_equal(scores, reference, equal_nan=True)
        print(f"{name:8} {load_s:7.2f} {times[0]:8.3f} {min(times):7.3f} {len(exprs) / min(times):10.1f} {str(same):>5}")
    print(f"NaN scores: {int(np.isnan(reference).sum())} of {reference.size}")
    ray.shutdown()


if __name__ == "__main__":
    main()
