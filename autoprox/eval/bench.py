"""``autoprox bench``: correlation of proxies with a benchmark's accuracies."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from autoprox.core.config import config_yaml
from autoprox.core.io import atomic_write_many
from autoprox.data.benchmark import Benchmark, load_archs
from autoprox.eval.fitness import JcmVariant, correlations, jcm
from autoprox.parallel.backends import make_backend, score_proxies
from autoprox.parallel.session import CONNECT_TIMEOUT
from autoprox.proxy.spec import resolve
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
              address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> list[dict]:
    """Score every proxy on the benchmark's archs through a scoring backend."""
    bench, archs, targets = load_archs(cfg.space, cfg.bench, cfg.limit, cfg.targets)
    if len(archs) < 2:
        raise ValueError(f"cannot rank: {len(archs)} arch(s); bench needs at least 2")
    for t in targets:
        if np.all(bench.values(t)[:len(archs)] == bench.values(t)[0]):
            raise ValueError(f"cannot rank: every arch has the same {t} accuracy")
    proxies = [resolve(p) for p in cfg.proxies]  # fail early on an unknown name
    families = sorted(set().union(*(p.families for p in proxies)))
    be = make_backend(backend, cfg.space, cfg.scoring, workers=workers, address=address,
                      connect_timeout=connect_timeout)
    try:
        be.load(archs, families)
        scores = score_proxies(be, proxies)
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
    """``out/bench.csv`` and the resolved config beside it, both or neither (a full disk)."""
    atomic_write_many({out / "bench.csv": to_csv(rows).encode(), out / "config.yaml": config_yaml(cfg).encode()})
