"""``autoprox bench``: correlation of proxies with a benchmark's accuracies."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from autoprox.core.config import save_config
from autoprox.core.io import atomic_write_text
from autoprox.core.progress import Progress
from autoprox.data.benchmark import Benchmark, load_archs
from autoprox.eval.fitness import JcmVariant, correlations, jcm
from autoprox.parallel.backends import make_backend, score_proxies
from autoprox.proxy.spec import resolve
from autoprox.spaces import get_space
from autoprox.stats.provider import ScoringConfig

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

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if not self.proxies:
            raise ValueError("bench needs at least one proxy")
        get_space(self.space)  # unknown space: the error names the nearest and the known ones


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
        rows.append({"proxy": name, "dataset": "JCM", "n": n, "kendall": fit.jcm if fit.valid else float("nan"),
                     **mean})
    return rows


def run_bench(cfg: BenchConfig, backend: str = "serial", workers: int = 2,
              address: str | None = None) -> list[dict]:
    """Score every proxy on the benchmark's archs through a scoring backend."""
    names, scores, bench, _, targets = score_bench(cfg, backend, workers, address)
    return bench_rows(names, scores, bench, targets, cfg.jcm)


def score_bench(cfg: BenchConfig, backend: str = "serial", workers: int = 2, address: str | None = None
                ) -> tuple[list[str], np.ndarray, Benchmark, list[dict], list[str]]:
    """(proxy names, (proxies x archs) scores, benchmark, archs, targets) of a bench run."""
    bench, archs, targets = load_archs(cfg.space, cfg.bench, cfg.limit, cfg.targets)
    if len(archs) < 2:
        raise ValueError(f"cannot rank: {len(archs)} arch(s); bench needs at least 2")
    for t in targets:
        if np.all(bench.values(t)[:len(archs)] == bench.values(t)[0]):
            raise ValueError(f"cannot rank: every arch has the same {t} accuracy")
    proxies = [resolve(p) for p in cfg.proxies]  # fail early on an unknown name
    families = sorted(set().union(*(p.families for p in proxies)))
    be = make_backend(backend, cfg.space, cfg.scoring, workers=workers, address=address)
    try:
        with Progress(f"bench {cfg.space}: statistics", len(archs)) as prog:
            be.load(archs, families, prog.advance)
        scores = score_proxies(be, proxies)
    finally:
        be.close()
    return [p.name for p in proxies], scores, bench, archs, list(targets)


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
    """``out/bench.csv`` and beside it the config with the values used (targets, cache folder)."""
    atomic_write_text(out / "bench.csv", to_csv(rows))
    targets = tuple(dict.fromkeys(r["dataset"] for r in rows if r["dataset"] != "JCM"))
    save_config(replace(cfg, targets=targets, scoring=cfg.scoring.resolved()), out / "config.yaml")


def scores_csv(names: Sequence[str], scores: np.ndarray, bench: Benchmark, archs: Sequence[dict],
               targets: Sequence[str], cfg: BenchConfig) -> str:
    """``scores.csv``: one row per arch (benchmark order): its index, the arch as JSON, the score
    of every proxy (column ``score_<proxy>``), ``num_params`` and ``flops`` (at the proxy batch's
    classes and resolution, as the ``params``/``flops`` proxies see them) and every target's value."""
    space = get_space(cfg.space)
    c, res = cfg.scoring.batch.num_classes, cfg.scoring.batch.resolution
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "arch", *(f"score_{n}" for n in names), "num_params", "flops", *targets])
    ys = [bench.values(t) for t in targets]
    for i, arch in enumerate(archs):
        w.writerow([i, json.dumps(arch, sort_keys=True), *(repr(float(v)) for v in scores[:, i]),
                    space.num_params(arch, c, res), space.flops(arch, c, res), *(repr(float(y[i])) for y in ys)])
    return buf.getvalue()


def bench_to(out: Path, cfg: BenchConfig, backend: str = "serial", workers: int = 2,
             address: str | None = None) -> list[dict]:
    """``run_bench``, writing ``bench.csv``, ``scores.csv`` and ``config.yaml`` into ``out``."""
    names, scores, bench, archs, targets = score_bench(cfg, backend, workers, address)
    rows = bench_rows(names, scores, bench, targets, cfg.jcm)
    write_bench(rows, cfg, out)
    write_scores(names, scores, bench, archs, targets, cfg, out)
    return rows


def write_scores(names: Sequence[str], scores: np.ndarray, bench: Benchmark, archs: Sequence[dict],
                 targets: Sequence[str], cfg: BenchConfig, out: Path) -> None:
    atomic_write_text(out / "scores.csv", scores_csv(names, scores, bench, archs, targets, cfg))
