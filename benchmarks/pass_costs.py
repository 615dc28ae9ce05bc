"""Seconds of each statistics pass on the largest arch of a benchmark file, one thread.

    python benchmarks/pass_costs.py autoformer-small ../shared/ood-vit-nas/small.json [PASS ...] [--batch-size N]

Default passes: base, features, zen, blocks, jacobian, ntk. Default batch (32 x 224, 100 classes)."""
from __future__ import annotations

import argparse
import time

import torch

from autoprox.data.benchmark import load_archs
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig
from autoprox.stats.batch import BatchConfig, make_batch
from autoprox.stats.extract import extract


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("space")
    ap.add_argument("bench", nargs="?", help="benchmark file (default: the space's shipped one)")
    ap.add_argument("passes", nargs="*", default=["base", "features", "zen", "blocks", "jacobian", "ntk"])
    ap.add_argument("--batch-size", type=int, default=BatchConfig().size, help="images in the proxy batch")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, archs, _ = load_archs(args.space, args.bench or None)
    sp = get_space(args.space)
    big = max(archs, key=lambda a: sp.num_params(a, num_classes=1000))
    batch_cfg = BatchConfig(size=args.batch_size)
    batch = make_batch(batch_cfg)
    print(f"{args.space}: largest arch {sp.num_params(big, num_classes=1000) / 1e6:.1f} M params", flush=True)
    for name in args.passes:
        t = time.perf_counter()
        extract(sp, big, batch.images, batch.labels, batch_cfg.num_classes, 0, StatsConfig(), passes=[name])
        print(f"{name}: {time.perf_counter() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
