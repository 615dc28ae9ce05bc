"""Does a proxy's ranking hold on a cheaper batch? Each zoo proxy on a benchmark's pre-registered
subset at the default batch (32 images) and at smaller ones: its Kendall tau against the target with
the interval, and the rank agreement (Kendall tau) between its scores on the two batches.

    python benchmarks/cheap_batch.py --space autoformer-tiny --bench ood-vit-nas/tiny.json --subset 100 \
        --sizes 16 8 [--passes base features] [--out cheap_batch.md]

A proxy *holds* at a size when its agreement is at least 0.9 and its tau lies inside the default
batch's interval; a big file may then use that size for it. Reads the statistics cache (fill it first:
``benchmarks/fill_plan.yaml``); scores what is cached and computes what is not.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from autoprox.eval.bench import BenchConfig, score_bench
from autoprox.eval.uncertainty import kendall_ci
from autoprox.proxy.graph import DATA_FREE
from autoprox.proxy.zoo import get_proxy, list_proxies
from autoprox.stats.passes import families_of_passes
from autoprox.stats.provider import ScoringConfig

AGREEMENT = 0.9


def zoo_reading(passes: list[str]) -> list[str]:
    """Zoo proxies whose statistics all come from ``passes`` (data-free ones aside: they ignore the batch)."""
    have = set(families_of_passes(passes))
    out = []
    for name in list_proxies():
        fams = set(get_proxy(name).families) - DATA_FREE
        if fams and fams <= have:
            out.append(name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", required=True)
    ap.add_argument("--bench")
    ap.add_argument("--subset", type=int, default=100)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 8])
    ap.add_argument("--passes", nargs="+", default=["base", "features"])
    ap.add_argument("--target", default="imagenet")
    ap.add_argument("--backend", default="serial")
    ap.add_argument("--out", default="cheap_batch.md")
    args = ap.parse_args()
    names = zoo_reading(args.passes)
    base = BenchConfig(space=args.space, bench=args.bench, proxies=tuple(names), targets=(args.target,),
                       subset=args.subset)
    scores, y = {}, None
    for size in [32, *args.sizes]:
        sc = ScoringConfig()
        cfg = replace(base, scoring=replace(sc, batch=replace(sc.batch, size=size)))
        _, by_name, bench, _, _ = score_bench(cfg, args.backend)
        scores[size] = by_name
        y = bench.values(args.target)
    lines = [f"{args.space}, pre-registered subset of {args.subset} archs, target {args.target}: Kendall tau "
             f"[95% CI] at each batch size, and the agreement of each size's ranking with 32 images'.", "",
             "| proxy | 32 images | " + " | ".join(f"{s} images | agreement {s}/32 | holds at {s}" for s in args.sizes)
             + " |", "|---|---|" + "---|---|---|" * len(args.sizes)]
    for n in names:
        ref = kendall_ci(scores[32][n], y)
        cells = [f"{ref.estimate:.3f} [{ref.lo:.3f}, {ref.hi:.3f}]"]
        for s in args.sizes:
            iv = kendall_ci(scores[s][n], y)
            ok = np.isfinite(scores[s][n]).all() and np.isfinite(scores[32][n]).all()
            agree = kendalltau(scores[s][n], scores[32][n])[0] if ok else float("nan")
            holds = bool(agree >= AGREEMENT and ref.lo <= iv.estimate <= ref.hi)
            cells += [f"{iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]", f"{agree:.3f}", "yes" if holds else "no"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
