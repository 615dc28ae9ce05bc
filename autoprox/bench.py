"""``autoprox bench``: correlation of proxies with ViT-Bench-101 accuracies."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .benchmark import Benchmark, load_benchmark
from .config import save_config
from .fitness import JcmVariant, correlations, jcm
from .io import atomic_write_text
from .parallel import make_backend
from .scoring import ScoringConfig
from .spaces import get_space

COLUMNS = ("proxy", "dataset", "n", "kendall", "spearman", "pearson")


@dataclass(frozen=True)
class BenchConfig:
    space: str = "autoformer"
    bench: str | None = None
    proxies: tuple[str, ...] = ("params",)
    targets: tuple[str, ...] = ()
    jcm: JcmVariant = "mean_tau"
    limit: int | None = None
    scoring: ScoringConfig = field(default_factory=ScoringConfig)


def load_archs(cfg: BenchConfig) -> tuple[Benchmark, list[dict], list[str]]:
    """Benchmark, its validated archs (first ``limit``) and the chosen targets."""
    bench = load_benchmark(cfg.space, cfg.bench)
    space = get_space(cfg.space)
    n = len(bench) if cfg.limit is None else min(cfg.limit, len(bench))
    archs = []
    for i, a in enumerate(bench.archs[:n]):
        try:
            archs.append(space.validate(a))
        except ValueError as e:
            raise ValueError(f"{bench.source}: record {i}: {e}") from None
    targets = list(cfg.targets) or bench.default_targets()
    for t in targets:
        bench.values(t)  # raises a clear error for an unknown target
    return bench, archs, targets


def bench_rows(names: Sequence[str], scores: np.ndarray, bench: Benchmark, targets: Sequence[str],
               variant: JcmVariant) -> list[dict]:
    """One row per (proxy, target) plus one JCM row per proxy."""
    n = scores.shape[1]
    rows = []
    for name, s in zip(names, scores):
        ys = {t: bench.values(t)[:n] for t in targets}
        for t, y in ys.items():
            rows.append({"proxy": name, "dataset": t, "n": n, **correlations(s, y)})
        fit = jcm(s, ys, variant)
        mean = {k: float(np.mean([fit.per_target[t][k] for t in targets])) if fit.valid else float("nan")
                for k in ("spearman", "pearson")}
        rows.append({"proxy": name, "dataset": "JCM", "n": n, "kendall": fit.jcm, **mean})
    return rows


def run_bench(cfg: BenchConfig, resolve: Callable, backend: str = "serial", workers: int = 2,
              address: str | None = None) -> list[dict]:
    """Score every proxy on the benchmark's archs through a scoring backend."""
    bench, archs, targets = load_archs(cfg)
    proxies = [resolve(p) for p in cfg.proxies]  # fail early on an unknown name
    families = sorted(set().union(*(p.families for p in proxies)))
    be = make_backend(backend, cfg.space, cfg.scoring, workers=workers, address=address)
    try:
        be.load(archs, families)
        scores = be.score_named(list(cfg.proxies))
    finally:
        be.close()
    return bench_rows([p.name for p in proxies], scores, bench, targets, cfg.jcm)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    return buf.getvalue()


def to_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                                       for k in COLUMNS) + " |")
    return "\n".join(lines)


def write_bench(rows: list[dict], cfg: BenchConfig, out: Path) -> None:
    """``out/bench.csv`` and the resolved config beside it."""
    atomic_write_text(out / "bench.csv", to_csv(rows))
    save_config(cfg, out / "config.yaml")
