"""Seconds of each statistics pass on the largest arch of a benchmark file, one thread, beside a bare
forward+backward of the same arch and batch.

    python benchmarks/pass_costs.py autoformer-small ../shared/ood-vit-nas/small.json [PASS ...] [--batch-size N]

Default passes: base, features, zen, blocks, jacobian, ntk. Default batch (32 x 224, 100 classes).
Prints the model build, one train-mode forward + cross-entropy backward of the batch ("bare"), each
pass alone (one ``extract`` each: a build and the pass), then every pass in one ``extract`` (one build;
passes that share a forward run it once), each as a multiple of the bare forward+backward."""
from __future__ import annotations

import argparse
import time

import torch

from autoprox.core.memory import return_freed_memory
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
    return_freed_memory()  # glibc's mmap threshold as autoprox's CLI and workers set it
    _, archs, _ = load_archs(args.space, args.bench or None)
    sp = get_space(args.space)
    big = max(archs, key=lambda a: sp.num_params(a, num_classes=1000))
    batch_cfg = BatchConfig(size=args.batch_size)
    batch = make_batch(batch_cfg)
    print(f"{args.space}: largest arch {sp.num_params(big, num_classes=1000) / 1e6:.1f} M params", flush=True)
    t = time.perf_counter()
    model = sp.build(big, num_classes=batch_cfg.num_classes, img_size=batch.images.shape[-1], seed=0)
    build = time.perf_counter() - t
    bare = min(bare_forward_backward(model, batch.images, batch.labels) for _ in range(3))  # the first warms up
    print(f"build: {build:.1f} s; bare forward+backward: {bare:.1f} s (the fastest of 3)", flush=True)
    alone = 0.0
    for name in args.passes:
        t = time.perf_counter()
        extract(sp, big, batch.images, batch.labels, batch_cfg.num_classes, 0, StatsConfig(), passes=[name])
        alone += (s := time.perf_counter() - t)
        print(f"{name}: {s:.1f} s ({s / bare:.2f}x)", flush=True)
    t = time.perf_counter()
    extract(sp, big, batch.images, batch.labels, batch_cfg.num_classes, 0, StatsConfig(), passes=args.passes)
    s = time.perf_counter() - t
    print(f"each alone, summed: {alone:.1f} s ({alone / bare:.2f}x); together: {s:.1f} s ({s / bare:.2f}x)",
          flush=True)


def bare_forward_backward(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds of one train-mode forward of the batch and the backward of its mean cross-entropy."""
    model.train()
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
