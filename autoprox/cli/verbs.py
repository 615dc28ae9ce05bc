"""What each verb does: ``cmd_<verb>(args) -> exit code``. Every check that can fail runs
before anything is written; errors reach ``main`` as exceptions and become one line (exit 2)."""
from __future__ import annotations

import argparse
import fnmatch
import time
from pathlib import Path
from typing import Any

from autoprox.cli.flags import apply_sets, bench_files, overlay
from autoprox.core.config import from_dict, load_config, to_dict
from autoprox.core.io import check_writable_dir
from autoprox.core.progress import Progress
from autoprox.spaces import get_space


def cmd_bench(args: argparse.Namespace) -> int:
    from autoprox.eval.bench import BenchConfig, bench_to, to_markdown
    base = to_dict(load_config(BenchConfig, args.config)) if args.config else {}
    top = {"space": args.space, "bench": args.bench, "jcm": args.jcm, "limit": args.limit, "subset": args.subset,
           "proxies": args.proxy, "targets": args.targets.split(",") if args.targets else None,
           "n_boot": args.n_boot, "boot_seed": args.boot_seed}
    cfg = from_dict(BenchConfig, overlay(base, args, top), "bench config")
    out = Path(args.out or f"runs/bench-{get_space(cfg.space).name}")
    check_writable_dir(out)
    check_device(cfg.scoring.device, args.backend, cached_ok=True)
    rows = bench_to(out, cfg, args.backend, args.workers, args.address, args.connect_timeout)
    print(to_markdown(rows))
    print(f"\nwrote {out / 'bench.csv'}, scores.csv, config.yaml, scatter.png and jcm.png")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from autoprox.eval.bench import BenchConfig
    from autoprox.data.benchmark import load_archs
    from autoprox.parallel.backends import make_backend
    from autoprox.stats.cache import StatsCache
    from autoprox.stats.passes import families_of_passes
    from autoprox.stats.provider import StatsProvider
    cfg = from_dict(BenchConfig, overlay({}, args, {"space": args.space, "bench": args.bench,
                                                     "limit": args.limit, "subset": args.subset}),
                   "stats config")
    _, archs, _ = load_archs(cfg.space, cfg.bench, cfg.limit, subset=cfg.subset)
    check_device(cfg.scoring.device, args.backend)
    fams = families_of_passes(["base", *(args.passes or ())])
    provider = StatsProvider(cfg.space, cfg.scoring)
    present = [provider.present(a, fams) for a in archs]
    todo = [a for a, p in zip(archs, present) if not p]
    here = " (counted in this machine's cache; a cluster worker loads what its own holds)" if args.address else ""
    print(f"statistics of {len(archs)} archs of {cfg.space}: {len(archs) - len(todo)} cached, "
          f"{len(todo)} to compute{here}", flush=True)
    if args.dry_run:
        return 0
    backend = make_backend(args.backend, cfg.space, cfg.scoring, workers=args.workers, address=args.address,
                           connect_timeout=args.connect_timeout)
    step = 1 if args.backend == "serial" else args.workers
    t0 = time.perf_counter()
    try:  # cached entries are read first (one found unsound is computed again), then the rest
        _warm(backend, [a for a, p in zip(archs, present) if p], fams, f"checking cached {cfg.space}", 16 * step)
        _warm(backend, todo, fams, f"statistics {cfg.space}", step)
    finally:
        backend.close()
    dt = time.perf_counter() - t0
    root = StatsCache(cfg.scoring.cache_dir).root
    where = f"cached under {root}" if cfg.scoring.use_cache else "computed (--no-cache: nothing stored)"
    each = f", {dt / len(todo):.2f} s each" if todo else ""
    done = "not in this machine's cache: computed or loaded by the workers" if args.address else "computed"
    print(f"{len(archs)} archs of {cfg.space} {where} in {dt:.1f} s ({len(todo)} {done}{each})")
    return 0


def _warm(backend: Any, archs: list, fams: tuple[str, ...], label: str, step: int) -> None:
    """``archs``' statistics computed or checked on ``backend``, ``step`` archs at a time, with progress."""
    if archs:
        with Progress(label, len(archs)) as prog:
            for i in range(0, len(archs), step):
                backend.warm(archs[i:i + step], fams)
                prog.update(min(i + step, len(archs)))


def cmd_fit(args: argparse.Namespace) -> int:
    from autoprox.eval.bench import BenchConfig
    from autoprox.eval.fit import fit_proxy
    from autoprox.proxy.export import to_yaml
    from autoprox.core.io import atomic_write_text
    top = {"space": args.space, "bench": args.bench, "subset": args.subset,
           "targets": args.targets.split(",") if args.targets else None}
    cfg = from_dict(BenchConfig, overlay({}, args, top), "fit config")
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise ValueError(f"--out {out}: a proxy file ends in .yaml or .yml")
    check_writable_dir(out.parent if str(out.parent) else Path("."))
    check_device(cfg.scoring.device, args.backend, cached_ok=True)
    proxy, info = fit_proxy(cfg, args.model, ("base", *(args.passes or ("features",))), args.backend, args.workers,
                            name=out.stem, address=args.address, connect_timeout=args.connect_timeout)
    atomic_write_text(out, to_yaml(proxy))
    cv = f"inner 5-fold tau {info['cv_tau']:.3f}"
    how = f"boosted trees: {cv}" if info["model"] == "zc-trees" else \
        f"alpha {info['alpha']:g}: {cv} (alpha chosen on the same folds)"
    print(f"{info['model']} on {info['archs']} labelled archs ({', '.join(info['targets'])}), {info['inputs']} "
          f"inputs, {how}, "
          f"in-sample JCM {info['in_sample']:.3f}\nwrote {out}: use it as any proxy (bench, search --proxy {out}, export)")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from autoprox.proxy.export import proxy_formula
    from autoprox.proxy.graph import leaves
    from autoprox.proxy.zoo import get_proxy, list_proxies
    names = [n for n in list_proxies() if args.filter is None or fnmatch.fnmatchcase(n, args.filter)]
    if not names:
        raise ValueError(f"no zoo proxy matches {args.filter!r}; the zoo: {', '.join(list_proxies())}")
    print("| proxy | what it is | statistics | formula |\n|---|---|---|---|")
    for name in names:
        p = get_proxy(name)
        stats = ", ".join(sorted(set().union(*(leaves(q.expr) for q in p.parts))))
        what = (p.description.strip().splitlines() or [""])[0].rstrip(".").replace("|", "/")  # its first line
        print(f"| {name} | {what} | {stats} | `{proxy_formula(p)}`" + (" over archs" if p.fused else "") + " |")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from autoprox.archsearch.model_file import arch_from, write_model
    arch, space = arch_from(args.arch, args.rank)
    space = args.space or space
    if not space:
        raise ValueError("build needs --space (an arch given as JSON names no space)")
    model, config = write_model(args.out, space, arch, args.num_classes, args.img_size, args.seed, args.drop_path)
    print(f"wrote {model} and {config}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from autoprox.proxy.export import write_export
    from autoprox.proxy.spec import resolve
    p = resolve(args.proxy)
    text = write_export(p, args.format, args.out)
    print(f"wrote {args.out}" if args.out else text, end="\n" if args.out else "")
    return 0


RUN_FILES = ("config.yaml", "checkpoint.json", "history.jsonl", "hall_of_fame.yaml", "best.yaml", "progress.csv",
             "jcm.png", "best_vs_accuracy.png", "summary.md")


def _written(folder: Path, names: tuple[str, ...]) -> str:
    """The ones of ``names`` that are files in ``folder``: a summary never claims a file it did not write."""
    return " ".join(n for n in names if (folder / n).is_file())


def cmd_search(args: argparse.Namespace) -> int:
    from autoprox.archsearch.config import SearchConfig, parse_window
    from autoprox.archsearch.report import progress_callback, regret_markdown, top_markdown
    from autoprox.proxy.spec import resolve
    from autoprox.archsearch.run import search
    base = to_dict(load_config(SearchConfig, args.config)) if args.config else {}
    top = {"proxy": args.proxy, "space": args.space, "budget": args.budget, "strategy": args.strategy,
           "top_k": args.top_k, "seed": args.search_seed, "chunk": args.chunk, "population": args.population,
           "bench": args.bench, "targets": args.targets.split(",") if args.targets else None,
           "params": parse_window(args.params, "--params") if args.params else None,
           "flops": parse_window(args.flops, "--flops") if args.flops else None,
           "bench_only": True if args.bench_only else None, "minimize": True if args.minimize else None}
    merged = overlay(base, args, top)
    missing = [k for k in ("proxy", "space") if not merged.get(k)]
    if missing:
        raise ValueError(f"search needs --{missing[0]} (or '{missing[0]}:' in --config)")
    cfg = from_dict(SearchConfig, merged, "search config")
    check_device(cfg.scoring.device, args.backend)
    resolve(cfg.proxy)  # an unknown proxy: one line before any progress is shown
    out = Path(args.out)
    with Progress(f"search {cfg.space} with {cfg.proxy}") as prog:
        res = search(cfg, out, resume=args.resume, backend=args.backend, workers=args.workers,
                     address=args.address, progress=progress_callback(prog), connect_timeout=args.connect_timeout)
    print(top_markdown(res.top))
    if res.regret is not None:
        print("\n" + regret_markdown(res.regret))
    note = " (stopped early: no new legal arch found in 20000 samples)" if res.exhausted else ""
    scored = len(res.history) - res.restored
    read = f", {res.restored} more read from the checkpoint ({len(res.history)} in all)" if res.restored else ""
    print(f"\n{scored} candidates scored in {res.timings.get('total', 0.0):.1f} s{read}{note}; "
          f"wrote {out / 'result.yaml'}, history.csv, config.yaml, scores.png")
    return 0


def cmd_evolve(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from autoprox.discovery.config import PICK_RULES, EvolveConfig, load_evolve_config
    from autoprox.discovery.run import evolve
    from autoprox.discovery.report import step_note
    if args.fold is not None and args.cv is None:
        raise ValueError("--fold needs --cv K")
    if sum((args.transfer, args.cv is not None, args.labels is not None)) > 1:
        raise ValueError("--transfer, --cv and --labels are separate runs: give one of them")
    if args.seed_steps and args.labels is None:
        raise ValueError("--seed-steps needs --labels")
    cfg = load_evolve_config(args.config)
    if args.set:
        cfg = from_dict(EvolveConfig, apply_sets(to_dict(cfg), args.set), f"{Path(args.config).name} with --set")
    if args.bench:
        files = {**cfg.objective.bench, **bench_files(args.bench, cfg.objective.spaces)}
        cfg = replace(cfg, objective=replace(cfg.objective, bench=files))
    check_device(cfg.objective.scoring.device, args.backend, cached_ok=True)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    with Progress("evolve", cfg.steps) as prog:
        def on_step(row: dict) -> None:  # a cv or transfer run counts the steps of all its runs
            where = f"{row['run']}: " if "run" in row else ""
            prog.update(row.get("run_index", 0) * cfg.steps + row["step"], total=row.get("runs", 1) * cfg.steps,
                        note=where + step_note(row, bool(cfg.objective.beyond_size)))
        if args.labels is not None:
            return _evolve_labels(args, cfg, out, on_step)
        if args.transfer:
            from autoprox.discovery.transfer import transfer, transfer_runs
            transfer_runs(cfg)  # fewer than 2 spaces: one line before anything is written
            transfer(cfg, out, args.resume, on_step, backend=args.backend, workers=args.workers,
                     address=args.address, connect_timeout=args.connect_timeout)
            print((out / "transfer.md").read_text(encoding="utf-8"))
            print(f"wrote {out}/: transfer.md, transfer.json (each source run in without-*/)")
            return 0
        if args.cv is not None:
            from autoprox.discovery.cv import cross_validate
            only = None if args.fold is None else args.fold if args.fold == "final" else f"fold-{args.fold}"
            _, run = cross_validate(cfg, out, args.cv, args.resume, on_step, only, backend=args.backend,
                                    workers=args.workers, address=args.address, connect_timeout=args.connect_timeout)
            print(f"{out / only} done; gather the folds with --cv {args.cv} --resume" if only else
                  (out / "cv.md").read_text(encoding="utf-8"))
        else:
            run = evolve(cfg, out, args.resume, args.backend, args.workers, args.address, on_step=on_step,
                         connect_timeout=args.connect_timeout)
    best = run.pick()
    if best is not None:
        r = best.record
        print(f"best (picked {PICK_RULES[cfg.pick]}): JCM train {r['train']:.3f}  val {r['val']:.3f}"
              + (f"  test {r['test']:.3f}" if r.get("test") is not None else "") + f"\n  {r['expression']}")
    if best is None:
        print("no pick: no member of the hall of fame has a validation JCM (too few archs or steps); "
              "no best.yaml was written")
    if args.cv is not None and args.fold is None:
        print(f"wrote {out}/: {_written(out, ('cv.md', 'best.yaml'))} (each run's outputs in fold-*/ and final/)")
    elif run.wrote:
        print(f"wrote {run.out}/: {_written(run.out, RUN_FILES)}")
    else:
        print(f"{run.out}/ was finished and written before; nothing rewritten")
    return 0


def _evolve_labels(args: argparse.Namespace, cfg: Any, out: Path, on_step: Any) -> int:
    from autoprox.discovery.labels import label_study, parse_budgets
    from autoprox.discovery.transfer import transfer_runs
    ks = parse_budgets(args.labels)
    transfer_runs(cfg)  # fewer than 2 spaces: one line before anything is written
    label_study(cfg, out, ks, args.draws, args.resume, on_step, args.seed_steps, backend=args.backend,
                workers=args.workers, address=args.address, connect_timeout=args.connect_timeout)
    print((out / "labels.md").read_text(encoding="utf-8"))
    seeded = ", each draw's seeded run in seeded-*/" if args.seed_steps else ""
    print(f"wrote {out}/: labels.md, labels.json, labels.png (each source run in without-*/{seeded})")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from autoprox.stats.cache import StatsCache
    cache = StatsCache(args.cache_dir)
    if args.action == "info":
        files = list(cache.root.glob("*/*/*.apx")) if cache.root.is_dir() else []
        size = sum(f.stat().st_size for f in files)
        print(f"{cache.root}: {len(files)} entries, {size / 1e9:.2f} GB")
    elif args.action == "clean":
        n = cache.clean_temporaries()
        print(f"removed {n} temporary file(s) under {cache.root}")
    else:
        from autoprox.stats.migrate import migrate
        from autoprox.stats.provider import ScoringConfig
        scoring = from_dict(ScoringConfig, overlay({}, args, {})["scoring"], "scoring")
        moved = {s: migrate(s, scoring) for s in (args.space or ["autoformer", "pit"])}
        print("re-keyed " + ", ".join(f"{n} {s} entries" for s, n in moved.items()) + f" under {cache.root}")
    return 0


def check_device(device: str, backend: str, cached_ok: bool = False) -> None:
    """A one-line error for a device this machine (serial backend) cannot use. With ``cached_ok``
    (verbs that load every arch's statistics before writing anything), cuda passes here and only
    an arch whose statistics are not cached for cuda stops the run (``StatsProvider.get``)."""
    import torch
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; use cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: autoprox runs on cpu or cuda")
    if dev.type == "cuda" and backend == "serial" and not cached_ok and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")



