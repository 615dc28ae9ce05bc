"""Cost of statistics extraction and of the cache, at a given batch.

- overhead: extract() (build + forward/backward with hooks + virtual pass + copies)
  against build + a bare forward/backward of the same model and batch, min of reps;
  and the lean extraction of only snip's family (``snip_saliency``), what an
  uncached search with a one-forward-backward proxy runs per candidate;
- cache: file size of every AutoFormer benchmark arch's statistics (the largest
  computed for real, the rest from the layout), and the time to load the largest.

    python benchmarks/bench_stats.py --batch-size 64 --resolution 224
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from autoprox.stats.batch import BatchConfig, make_batch
from autoprox.data.benchmark import load_benchmark
from autoprox.stats.cache import StatsCache, encode
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig
from autoprox.stats.extract import extract

LEAN = frozenset({"snip_saliency"})  # snip's statistics


def bare(space, arch, b, seed: int) -> None:
    model = space.build(arch, num_classes=100, img_size=b.images.shape[-1], seed=seed)
    model.train()
    F.cross_entropy(model(b.images), b.labels).backward()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--archs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench, space = load_benchmark("autoformer"), get_space("autoformer")
    b = make_batch(BatchConfig(size=args.batch_size, resolution=args.resolution))
    cfg = StatsConfig()
    params = [space.num_params(a) for a in bench.archs]
    idx = np.random.default_rng(0).choice(len(bench), args.archs, replace=False)
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}x{args.resolution}")
    ratios = []
    for i in idx:
        arch = bench.archs[i]
        tb, te, tl = [], [], []
        for _ in range(args.reps):
            t = time.perf_counter(); bare(space, arch, b, 0); tb.append(time.perf_counter() - t)
            t = time.perf_counter(); extract(space, arch, b.images, b.labels, 100, 0, cfg); te.append(time.perf_counter() - t)
            t = time.perf_counter(); extract(space, arch, b.images, b.labels, 100, 0, cfg, families=LEAN)
            tl.append(time.perf_counter() - t)
        ratios.append((min(te) / min(tb), min(tl) / min(tb)))
        print(f"arch {i} ({params[i] / 1e6:.2f} M): bare {min(tb):.2f} s, extract {min(te):.2f} s "
              f"(ratio {ratios[-1][0]:.3f}), lean {min(tl):.2f} s (ratio {ratios[-1][1]:.3f})")
    r = np.array(ratios)
    print(f"overhead ratio: full mean {r[:, 0].mean():.3f} max {r[:, 0].max():.3f}; "
          f"lean mean {r[:, 1].mean():.3f} max {r[:, 1].max():.3f}")
    big = int(np.argmax(params))
    s = extract(space, bench.archs[big], b.images, b.labels, 100, 0, cfg)
    with tempfile.TemporaryDirectory() as d:
        cache = StatsCache(d)
        cache.save("autoformer", "k" * 32, s, cfg.dtype, {})
        size = cache.path("autoformer", "k" * 32).stat().st_size
        cache.load("autoformer", "k" * 32)  # warm the page cache
        loads = []
        for _ in range(10):
            t = time.perf_counter(); cache.load("autoformer", "k" * 32); loads.append(time.perf_counter() - t)
    print(f"largest arch {big} ({params[big] / 1e6:.2f} M): cache file {size / 2**20:.1f} MiB, "
          f"load median {np.median(loads) * 1e3:.1f} ms (min {min(loads) * 1e3:.1f})")
    print(f"fp32 would be {len(encode(s, 'float32', {})) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
