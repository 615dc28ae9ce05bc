"""CPU seconds and peak memory of statistics passes under one glibc mmap threshold, with or without
the trim after each arch: the figures behind ``autoprox/core/memory.py``'s setting.

    python benchmarks/malloc_cost.py autoformer-small ../shared/ood-vit-nas/small.json base,features \
        --threshold 4194304 --trim [--archs 2]

``--threshold default`` leaves glibc's own climbing threshold. The script re-runs itself with
``MALLOC_MMAP_THRESHOLD_`` set, as a Ray worker starts, then computes the first ``--archs`` archs of
the file in one process (default batch, one thread) and prints per arch its wall, user and system
seconds, minor page faults, resident memory after it and the peak so far. Run each setting in its own
invocation; on a shared machine compare CPU seconds (user + system), not wall time.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

ENV_KEY = "MALLOC_MMAP_THRESHOLD_"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space")
    ap.add_argument("bench")
    ap.add_argument("passes", help="comma-separated passes, e.g. base,features")
    ap.add_argument("--threshold", default="default", help="bytes, or 'default' for glibc's own")
    ap.add_argument("--trim", action="store_true", help="malloc_trim after each arch")
    ap.add_argument("--archs", type=int, default=2)
    args = ap.parse_args()
    want = None if args.threshold == "default" else str(int(args.threshold))
    if os.environ.get(ENV_KEY) != want:  # glibc reads the variable at start: run again with it
        env = {k: v for k, v in os.environ.items() if k != ENV_KEY}
        os.execve(sys.executable, [sys.executable, *sys.argv], {**env, **({ENV_KEY: want} if want else {})})
    run(args)


def run(args: argparse.Namespace) -> None:
    import ctypes

    import torch

    from autoprox.data.benchmark import load_archs
    from autoprox.spaces import get_space
    from autoprox.stats.base import StatsConfig
    from autoprox.stats.batch import BatchConfig, make_batch
    from autoprox.stats.extract import extract
    torch.set_num_threads(1)
    libc = ctypes.CDLL("libc.so.6")
    _, archs, _ = load_archs(args.space, args.bench)
    sp, cfg = get_space(args.space), BatchConfig()
    batch = make_batch(cfg)
    print(f"{args.space} {args.passes}: threshold {args.threshold}, trim {args.trim}", flush=True)
    for arch in archs[:args.archs]:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        extract(sp, arch, batch.images, batch.labels, cfg.num_classes, 0, StatsConfig(), passes=args.passes.split(","))
        if args.trim:
            libc.malloc_trim(0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * resource.getpagesize() / 2**30
        print(f"wall {time.perf_counter() - t0:.1f} s, user {r1.ru_utime - r0.ru_utime:.1f} s, system "
              f"{r1.ru_stime - r0.ru_stime:.1f} s, minor faults {(r1.ru_minflt - r0.ru_minflt) / 1e6:.2f} M, "
              f"resident after {resident:.2f} GiB, peak {r1.ru_maxrss / 2**20:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
