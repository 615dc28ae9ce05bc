"""Training-free search benchmarks: regret of every zoo proxy, and where search time goes.

``--regret``: for each proxy and space, pick the best-scoring labelled ViT-Bench-101 arch
(optionally inside --params/--flops windows) and report its true accuracy, its rank among
the labelled archs, the best accuracy and the regret, and the Kendall tau of score vs accuracy
(both with 95% bootstrap intervals over the archs), as one markdown table.

``--timing``: random search of ``--budget`` AutoFormer candidates with each of ``--proxies``
(default: ``snip``, one forward+backward per arch, and the data-free ``params``), statistics
computed fresh in ``--cache-dir`` (default: a new temporary dir), timed per stage.

    PYTHONPATH=. python benchmarks/bench_search.py --regret --proxies params flops
    PYTHONPATH=. python benchmarks/bench_search.py --timing --budget 1000
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from autoprox.stats.batch import BatchConfig
from autoprox.core.io import atomic_write_text
from autoprox.stats.provider import ScoringConfig
from autoprox.archsearch.config import SearchConfig, parse_window
from autoprox.archsearch.run import bench_only_table, search
from autoprox.archsearch.report import regret_markdown
from autoprox.spaces import get_space
from autoprox.proxy.spec import resolve as resolve_proxy
from autoprox.proxy.zoo import list_proxies

SPACES = ("autoformer", "pit")


def usable(names: list[str]) -> list[str]:
    """The proxies that construct; the others are reported and skipped."""
    ok = []
    for n in names:
        try:
            resolve_proxy(n)
            ok.append(n)
        except Exception as e:  # noqa: BLE001  (a broken zoo entry must not stop the table)
            print(f"skipping proxy {n!r}: {type(e).__name__}: {e}")
    return ok


def regret(args: argparse.Namespace, scoring: ScoringConfig) -> str:
    names = usable(args.proxies or list_proxies())
    rows = []
    for space in args.spaces:
        t = time.perf_counter()
        rows += bench_only_table(names, space, scoring, params=args.params, flops=args.flops,
                                 backend=args.backend, workers=args.workers)
        print(f"{space}: {len(names)} proxies in {time.perf_counter() - t:.1f} s")
    return regret_markdown(rows)


def build_seconds(space: str, archs: list[dict], scoring: ScoringConfig) -> float:
    """Mean seconds to build (and initialise) one model at the batch's size."""
    sp, b = get_space(space), scoring.batch
    t = time.perf_counter()
    for a in archs:
        sp.build(a, num_classes=b.num_classes, img_size=b.resolution)
    return (time.perf_counter() - t) / max(len(archs), 1)


def timing(args: argparse.Namespace, scoring: ScoringConfig) -> str:
    lines = ["| proxy | candidates | total s | sample + constraints s | build + statistics s "
             "| (of which build, est.) s | scoring s | checkpoints s | s / candidate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in args.proxies or ["snip", "params"]:
        cfg = SearchConfig(proxy=name, space="autoformer", params=args.params, flops=args.flops,
                           budget=args.budget, chunk=args.chunk, strategy="random", scoring=scoring)
        out = Path(tempfile.mkdtemp(prefix="bench_search_run_"))
        try:
            res = search(cfg, out / "run", backend=args.backend, workers=args.workers)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        t = res.timings
        fams = resolve_proxy(name).families
        build = (build_seconds("autoformer", [h["arch"] for h in res.history[:4]], scoring)
                 * len(res.history) if fams else 0.0)
        lines.append(f"| {name} | {len(res.history)} | {t['total']:.2f} | {t.get('sample', 0):.2f} | "
                     f"{t.get('stats', 0) + t.get('backend_start', 0):.2f} | {build:.2f} | "
                     f"{t.get('score', 0):.2f} | {t.get('checkpoint', 0):.2f} | "
                     f"{t['total'] / max(len(res.history), 1):.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--regret", action="store_true", help="regret table of zoo proxies on both spaces")
    mode.add_argument("--timing", action="store_true", help="time a random AutoFormer search")
    ap.add_argument("--proxies", nargs="+", help="proxies (default: the whole zoo / snip and params)")
    ap.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES),
                    help="--regret: spaces to tabulate (default: both)")
    ap.add_argument("--budget", type=int, default=1000, help="--timing: candidates")
    ap.add_argument("--chunk", type=int, default=32, help="--timing: candidates per chunk")
    ap.add_argument("--params", type=parse_window, help="params window in millions, MIN-MAX")
    ap.add_argument("--flops", type=lambda s: parse_window(s, "--flops"), help="FLOPs window, MIN-MAX")
    ap.add_argument("--batch-size", type=int, default=None, help="proxy batch images (default 32)")
    ap.add_argument("--resolution", type=int, default=None, help="proxy batch side (default 224)")
    ap.add_argument("--cache-dir", help="statistics cache (--timing default: a fresh temporary dir; "
                                        "--regret default: the shared cache)")
    ap.add_argument("--backend", choices=("serial", "ray"), default="serial")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="also write the table to this markdown file")
    args = ap.parse_args()
    batch = BatchConfig(**{k: v for k, v in (("size", args.batch_size), ("resolution", args.resolution))
                           if v is not None})
    fresh = args.timing and args.cache_dir is None
    cache = tempfile.mkdtemp(prefix="bench_search_cache_") if fresh else args.cache_dir
    scoring = dataclasses.replace(ScoringConfig(batch=batch), cache_dir=cache)
    try:
        table = regret(args, scoring) if args.regret else timing(args, scoring)
    finally:
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")


if __name__ == "__main__":
    main()
