"""The one command line: ``autoprox <verb>``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .config import ConfigError, from_dict, to_dict, load_config

SCORING_FLAGS = {  # flag -> (path in ScoringConfig, type, help)
    "batch_source": (("batch", "source"), str, "synthetic (default, offline), cifar100 or folder"),
    "batch_path": (("batch", "path"), str, "CIFAR-100 'train' file/folder, or image folder"),
    "batch_size": (("batch", "size"), int, "images in the proxy batch"),
    "resolution": (("batch", "resolution"), int, "image side in pixels"),
    "num_classes": (("batch", "num_classes"), int, "classes of the model head and labels"),
    "seed": (("seed",), int, "seed of model init and stochastic layers"),
    "device": (("device",), str, "cpu or cuda[:N]"),
    "cache_dir": (("cache_dir",), str, "statistics cache folder"),
    "stats_dtype": (("stats", "dtype"), str, "float16 (default) or float32 cache storage"),
    "teacher": (("teacher",), str, "ConvNet teacher for tvt: TorchScript file or torch.save(model) pickle"),
}


def _add_scoring_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("statistics (override the config file)")
    for flag, (_, tp, help_) in SCORING_FLAGS.items():
        g.add_argument("--" + flag.replace("_", "-"), dest=flag, type=tp, default=None, help=help_)
    g.add_argument("--no-cache", dest="use_cache", action="store_false", default=None,
                   help="compute statistics without reading or writing the cache")


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("parallelism")
    g.add_argument("--backend", choices=("serial", "ray"), default="serial",
                   help="serial (in-process) or ray (actors own shards of archs)")
    g.add_argument("--workers", type=int, default=2, help="Ray actors (one CPU each)")
    g.add_argument("--address", help="join an existing Ray cluster instead of starting a local one")


def _overlay(base: dict, args: argparse.Namespace, top: dict[str, Any]) -> dict:
    """Apply explicitly given flags onto a plain config dict."""
    sc = base.setdefault("scoring", {})
    for flag, (path, _, _) in SCORING_FLAGS.items():
        v = getattr(args, flag, None)
        if v is not None:
            d = sc
            for k in path[:-1]:
                d = d.setdefault(k, {})
            d[path[-1]] = v
    if getattr(args, "use_cache", None) is False:
        sc["use_cache"] = False
    base.update({k: v for k, v in top.items() if v is not None})
    return base


def _progress(label: str) -> Callable[[Iterable, int], Iterable]:
    def wrap(it: Iterable, total: int) -> Iterable:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
        cols = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn())
        with Progress(*cols, transient=True, disable=not sys.stderr.isatty()) as prog:
            task = prog.add_task(label, total=total)
            for x in it:
                yield x
                prog.advance(task)
    return wrap


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench, to_markdown, write_bench
    from .zoo import resolve_proxy
    base = to_dict(load_config(BenchConfig, args.config)) if args.config else {}
    top = {"space": args.space, "bench": args.bench, "jcm": args.jcm, "limit": args.limit,
           "proxies": args.proxy, "targets": args.targets.split(",") if args.targets else None}
    cfg = from_dict(BenchConfig, _overlay(base, args, top), "bench config")
    rows = run_bench(cfg, resolve_proxy, args.backend, args.workers, args.address)
    out = Path(args.out or f"runs/bench-{cfg.space}")
    write_bench(rows, cfg, out)
    print(to_markdown(rows))
    print(f"\nwrote {out / 'bench.csv'} and {out / 'config.yaml'}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import time

    from .bench import BenchConfig, load_archs
    from .cache import StatsCache
    from .parallel import make_backend
    from .stats import BASE_FAMILIES, PASSES
    cfg = from_dict(BenchConfig, _overlay({}, args, {"space": args.space, "bench": args.bench,
                                                       "limit": args.limit}), "stats config")
    _, archs, _ = load_archs(cfg)
    fams = BASE_FAMILIES + tuple(f for p in args.passes or () for f in PASSES[p])
    backend = make_backend(args.backend, cfg.space, cfg.scoring, workers=args.workers, address=args.address)
    step = 1 if args.backend == "serial" else args.workers
    t0 = time.perf_counter()
    try:
        for i in _progress(f"statistics {cfg.space}")(range(0, len(archs), step), -(-len(archs) // step)):
            backend.warm(archs[i:i + step], fams)
    finally:
        backend.close()
    dt = time.perf_counter() - t0
    root = StatsCache(cfg.scoring.cache_dir).root
    print(f"{len(archs)} archs of {cfg.space} cached under {root} in {dt:.1f} s "
          f"({dt / max(len(archs), 1):.2f} s/arch)")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from .export import formula
    from .fuse import is_fused
    from .graph import GraphProxy, leaves
    from .zoo import get_proxy, list_proxies
    print("| proxy | statistics | formula |\n|---|---|---|")
    for name in list_proxies():
        p = get_proxy(name)
        if isinstance(p, GraphProxy):
            print(f"| {name} | {', '.join(sorted(leaves(p.expr)))} | `{formula(p.expr)}` |")
        elif is_fused(p):  # parts scored per arch, fused across the archs scored together
            stats = sorted(set().union(*(leaves(q.expr) for q in p.parts)))
            parts = ", ".join(f"`{formula(q.expr)}`" for q in p.parts)
            print(f"| {name} | {', '.join(stats)} | {p.fusion}({parts}) over archs |")
        else:
            print(f"| {name} | {', '.join(sorted(p.families))} | {getattr(p, 'description', '')} |")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import write_export
    from .fuse import is_fused
    from .graph import GraphProxy
    from .zoo import resolve_proxy
    p = resolve_proxy(args.proxy)
    if is_fused(p):
        raise ValueError(f"proxy {p.name!r} fuses its parts ({p.fusion}) across archs and cannot be exported "
                         f"as one graph; export a part from a YAML file 'expression: ...': "
                         + "; ".join(str(q.expr) for q in p.parts))
    if not isinstance(p, GraphProxy):
        raise ValueError(f"proxy {p.name!r} is not a graph proxy and cannot be exported")
    text = write_export(p, args.format, args.out)
    print(f"wrote {args.out}" if args.out else text, end="\n" if args.out else "")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .search import SearchConfig, parse_window, search
    from .search_report import regret_markdown, rich_progress, top_markdown
    base = to_dict(load_config(SearchConfig, args.config)) if args.config else {}
    top = {"proxy": args.proxy, "space": args.space, "budget": args.budget, "strategy": args.strategy,
           "top_k": args.top_k, "seed": args.search_seed, "chunk": args.chunk, "population": args.population,
           "bench": args.bench, "targets": args.targets.split(",") if args.targets else None,
           "params": parse_window(args.params, "--params") if args.params else None,
           "flops": parse_window(args.flops, "--flops") if args.flops else None,
           "bench_only": True if args.bench_only else None, "minimize": True if args.minimize else None}
    cfg = from_dict(SearchConfig, _overlay(base, args, top), "search config")
    out = Path(args.out)
    with rich_progress(f"search {cfg.space} with {cfg.proxy}") as progress:
        res = search(cfg, out, resume=args.resume, backend=args.backend, workers=args.workers,
                     address=args.address, progress=progress)
    print(top_markdown(res.top))
    if res.regret is not None:
        print("\n" + regret_markdown(res.regret))
    note = " (stopped early: no new legal arch found in 20000 samples)" if res.exhausted else ""
    print(f"\n{len(res.history)} candidates scored in {res.timings.get('total', 0.0):.1f} s{note}; "
          f"wrote {out / 'result.yaml'}, history.csv, config.yaml")
    return 0


def cmd_evolve(args: argparse.Namespace) -> int:
    from .evolve import evolve, load_evolve_config
    from .evolve_report import live_display
    cfg = load_evolve_config(args.config)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    update, stop = live_display(cfg.steps)
    try:
        run = evolve(cfg, out, args.resume, args.backend, args.workers, args.address, on_step=update)
    finally:
        stop()
    best = run.pick()
    if best is not None:
        r = best.record
        print(f"best (picked on validation): JCM train {r['train']:.3f}  val {r['val']:.3f}"
              + (f"  test {r['test']:.3f}" if r.get("test") is not None else "") + f"\n  {r['expression']}")
    print(f"wrote {out}/: config.yaml checkpoint.json history.jsonl hall_of_fame.yaml best.yaml progress.csv "
          f"jcm.png best_vs_accuracy.png")
    return 0


def _add_search_parser(sub: Any) -> None:
    se = sub.add_parser("search", help="training-free ViT search with a proxy under params/FLOPs limits")
    se.add_argument("--proxy", help="zoo name or proxy YAML file")
    se.add_argument("--space", help="search space (autoformer, pit)")
    se.add_argument("--params", help="parameter window in millions, MIN-MAX (e.g. 4-9; '4-' = at least 4)")
    se.add_argument("--flops", help="FLOPs (multiply-accumulates) window in millions, MIN-MAX")
    se.add_argument("--budget", type=int, help="candidates to score (default 1000)")
    se.add_argument("--strategy", choices=("random", "evolution"), help="default random (best of N)")
    se.add_argument("--top-k", dest="top_k", type=int, help="archs kept in result.yaml (default 5)")
    se.add_argument("--search-seed", dest="search_seed", type=int,
                    help="seed of sampling/evolution (--seed is the statistics seed)")
    se.add_argument("--chunk", type=int,
                    help="candidates scored between checkpoints (default 32; a multiple of --workers)")
    se.add_argument("--population", type=int, help="evolution: random candidates before evolving")
    se.add_argument("--minimize", action="store_true", help="lower proxy score is better")
    se.add_argument("--bench-only", dest="bench_only", action="store_true",
                    help="candidates are the labelled ViT-Bench-101 archs; report true accuracy and regret")
    se.add_argument("--bench", help="benchmark JSON file for --bench-only (default: the shipped one)")
    se.add_argument("--targets", help="--bench-only: comma-separated targets, e.g. c100_kd,flower_kd")
    se.add_argument("--config", help="YAML search config (flags override it)")
    se.add_argument("--out", required=True,
                    help="run folder (config.yaml, state.json, history.csv, result.yaml)")
    se.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    _add_backend_flags(se)
    _add_scoring_flags(se)
    se.set_defaults(fn=cmd_search)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="autoprox", description=__doc__)
    sub = ap.add_subparsers(dest="verb", required=True)
    b = sub.add_parser("bench", help="correlate proxies with ViT-Bench-101 accuracies")
    b.add_argument("--space", choices=None, help="search space (autoformer, pit)")
    b.add_argument("--bench", help="benchmark JSON file (default: the shipped one)")
    b.add_argument("--proxy", nargs="+", help="zoo names or proxy files")
    b.add_argument("--targets", help="comma-separated targets, e.g. c100_kd,flower_kd")
    b.add_argument("--jcm", choices=("mean_tau", "mean_abs_tau"))
    b.add_argument("--limit", type=int, help="only the first N archs")
    b.add_argument("--config", help="YAML bench config (flags override it)")
    b.add_argument("--out", help="output folder (default runs/bench-<space>)")
    _add_backend_flags(b)
    _add_scoring_flags(b)
    b.set_defaults(fn=cmd_bench)
    st = sub.add_parser("stats", help="compute and cache the statistics of a benchmark's archs")
    st.add_argument("--space", required=True, help="search space (autoformer, pit)")
    st.add_argument("--bench", help="benchmark JSON file (default: the shipped one)")
    st.add_argument("--limit", type=int, help="only the first N archs")
    st.add_argument("--pass", dest="passes", action="append", choices=("hessian", "grad_groups", "teacher"),
                    help="also run and cache an optional statistics pass (repeatable)")
    _add_backend_flags(st)
    _add_scoring_flags(st)
    st.set_defaults(fn=cmd_stats)
    z = sub.add_parser("zoo", help="list every named proxy with its formula and statistics")
    z.set_defaults(fn=cmd_zoo)
    ex = sub.add_parser("export", help="write a proxy as text, LaTeX, YAML or standalone Python")
    ex.add_argument("proxy", help="zoo name or proxy file")
    ex.add_argument("--format", choices=("text", "latex", "yaml", "python"), default="text")
    ex.add_argument("--out", help="output file (default: print)")
    ex.set_defaults(fn=cmd_export)
    ev = sub.add_parser("evolve", help="evolve proxies with DEAP against ViT-Bench-101 (checkpointed)")
    ev.add_argument("--config", required=True, help="YAML evolve config (e.g. runs/quick.yaml)")
    ev.add_argument("--out", help="run folder (default runs/<config name>)")
    ev.add_argument("--resume", action="store_true", help="continue the run in the folder after a kill")
    _add_backend_flags(ev)
    ev.set_defaults(fn=cmd_evolve)
    _add_search_parser(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"autoprox {args.verb}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
