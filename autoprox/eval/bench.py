"""``autoprox bench``: correlation of proxies with a benchmark's accuracies."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from autoprox.core.config import config_yaml
from autoprox.core.io import atomic_write_many
from autoprox.core.runs import check_owner, claimed
from autoprox.core.progress import Progress
from autoprox.data.benchmark import Benchmark, load_archs
from autoprox.eval.fitness import JcmVariant, correlations, jcm
from autoprox.eval.plots import bench_figures
from autoprox.eval.uncertainty import N_BOOT, kendall_ci, summarise
from autoprox.parallel.backends import make_backend, score_proxies
from autoprox.parallel.session import CONNECT_TIMEOUT
from autoprox.proxy.spec import check_space, resolve_all
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
    subset: int | None = None  # the benchmark's pre-registered subset of this many archs (``subset_order``)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    n_boot: int = N_BOOT  # bootstrap resamples of the archs for every interval and p-value
    boot_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {self.n_boot}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.subset is not None and self.subset < 2:
            raise ValueError(f"subset must be >= 2, got {self.subset}")
        if not self.proxies:
            raise ValueError("bench needs at least one proxy")
        get_space(self.space)  # unknown space: the error names the nearest and the known ones


def bench_rows(names: Sequence[str], scores: np.ndarray, bench: Benchmark, targets: Sequence[str],
               variant: JcmVariant) -> list[dict]:
    """One row per (proxy, target) plus one JCM row per proxy; the JCM row's ``orientation`` is -1
    where ``mean_tau`` negated the proxy on these archs (its per-target rows keep the raw sign)."""
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
                     **mean, "orientation": fit.sign if fit.valid and variant == "mean_tau" else ""})
    return rows


def score_bench(cfg: BenchConfig, backend: str = "serial", workers: int = 2, address: str | None = None,
                connect_timeout: float = CONNECT_TIMEOUT
                ) -> tuple[list[str], dict[str, np.ndarray], Benchmark, list[dict], list[str]]:
    """(proxy names, scores by name (the references of ``BASELINES`` included), benchmark, archs,
    targets) of a bench run; every proxy and reference is scored in one pass over the statistics."""
    bench, archs, targets = load_archs(cfg.space, cfg.bench, cfg.limit, cfg.targets, cfg.subset)
    if len(archs) < 2:
        raise ValueError(f"cannot rank: {len(archs)} arch(s); bench needs at least 2")
    for t in targets:
        if np.all(bench.values(t)[:len(archs)] == bench.values(t)[0]):
            raise ValueError(f"cannot rank: every arch has the same {t} accuracy")
    proxies = resolve_all(cfg.proxies)  # fail early on an unknown name or two proxies of one name
    check_space(proxies, cfg.space)
    names = [p.name for p in proxies]
    # the references (data-free: no statistics needed); a proxy of the user's under a reference's name refused
    refs = resolve_all([*proxies, *BASELINES])[len(proxies):]
    families = sorted(set().union(*(p.families for p in proxies + refs)))
    be = make_backend(backend, cfg.space, cfg.scoring, workers=workers, address=address,
                      connect_timeout=connect_timeout)
    try:
        with Progress(f"bench {cfg.space}: statistics", len(archs)) as prog:
            be.load(archs, families, prog.advance)
        scores = score_proxies(be, proxies + refs)
    finally:
        be.close()
    return names, dict(zip(names + [r.name for r in refs], scores)), bench, archs, list(targets)


def _rows(names: list[str], by_name: dict[str, np.ndarray], bench: Benchmark, archs: list[dict],
          targets: list[str], cfg: BenchConfig) -> list[dict]:
    rows = bench_rows(names, np.stack([by_name[n] for n in names]), bench, targets, cfg.jcm)
    return add_intervals(rows, names, by_name, {t: bench.values(t)[:len(archs)] for t in targets}, cfg)


def run_bench(cfg: BenchConfig, backend: str = "serial", workers: int = 2,
              address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> list[dict]:
    """Score every proxy on the benchmark's archs through a scoring backend: the rows of bench.csv."""
    return _rows(*score_bench(cfg, backend, workers, address, connect_timeout), cfg)


def bench_to(out: Path, cfg: BenchConfig, backend: str = "serial", workers: int = 2,
             address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> list[dict]:
    """``run_bench``, writing ``bench.csv``, ``scores.csv``, ``config.yaml``, ``scatter.png``
    (score vs accuracy per proxy and target) and ``jcm.png`` (JCM per proxy) into ``out``."""
    check_owner(out, "bench")  # another verb's run folder: refused before any work
    names, by_name, bench, archs, targets = score_bench(cfg, backend, workers, address, connect_timeout)
    rows = _rows(names, by_name, bench, archs, targets, cfg)
    accs = {t: bench.values(t)[:len(archs)] for t in targets}
    fit = jcm(by_name["params"], accs, cfg.jcm)  # the #params line of jcm.png
    figures = bench_figures(rows, by_name, accs, fit.jcm if fit.valid else float("nan"))
    with claimed(out, "bench"):
        write_bench(rows, cfg, out, scores_csv(names, np.stack([by_name[n] for n in names]), bench, archs, targets,
                                               cfg), figures)
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    cols = COLUMNS + INTERVAL_COLUMNS
    w = csv.DictWriter(buf, fieldnames=cols, restval="", extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in cols if k in r})
    return buf.getvalue()


def to_markdown(rows: list[dict]) -> str:
    """The bench table (with each Kendall tau's interval), then the JCM summary."""
    lines = ["| " + " | ".join(COLUMNS) + " | kendall 95% CI |", "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        ci = f"[{r['kendall_lo']:.3f}, {r['kendall_hi']:.3f}]" if "kendall_lo" in r else ""
        lines.append("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                                       for k in COLUMNS) + f" | {ci} |")
    return "\n".join(lines) + ("\n\n" + summary_markdown(rows) if any("ceiling" in r for r in rows) else "")


def write_bench(rows: list[dict], cfg: BenchConfig, out: Path, scores: str | None = None,
                figures: dict[str, bytes] | None = None) -> None:
    """``out/bench.csv``, ``scores.csv`` (if given), the config with the values used (targets,
    cache folder) and the rendered ``figures`` (file name -> PNG bytes): all or none (a full disk)."""
    targets = tuple(dict.fromkeys(r["dataset"] for r in rows if r["dataset"] != "JCM"))
    used = replace(cfg, targets=targets, scoring=cfg.scoring.resolved())
    files = {out / "bench.csv": to_csv(rows).encode(), out / "config.yaml": config_yaml(used).encode()}
    if scores is not None:
        files[out / "scores.csv"] = scores.encode()
    files.update({out / name: png for name, png in (figures or {}).items()})
    atomic_write_many(files)


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


# ---------------------------------------------------------------- intervals (autoprox.eval.uncertainty)
BASELINES = ("params", "depth_width")  # every proxy (and every evolved pick) is compared with these on the same archs
INTERVAL_COLUMNS = ("kendall_lo", "kendall_hi",
                    *(f"{c}_{r}" for r in BASELINES for c in ("diff", "diff_lo", "diff_hi", "p", "beats")),
                    "headroom", "ceiling", "ceiling_lo", "ceiling_hi", "beyond_size", "beyond_size_lo",
                    "beyond_size_hi", "ceiling_beyond_size", "n_boot", "orientation")


def add_intervals(rows: list[dict], names: Sequence[str], scores: dict[str, np.ndarray],
                  targets: dict[str, np.ndarray], cfg: BenchConfig) -> list[dict]:
    """``rows`` with bootstrap intervals (same resamples for every figure): each row's Kendall
    interval; on JCM rows the paired difference vs each reference (interval, p, verdict), the
    oracle ceiling, the headroom fraction and the partial tau given #params."""
    refs = {r: scores[r] for r in BASELINES}
    summ = summarise(names, np.stack([scores[n] for n in names]), targets, refs["params"], refs,
                     cfg.n_boot, cfg.boot_seed, variant=cfg.jcm)
    for r in rows:
        per = summ["proxies"][r["proxy"]]
        if r["dataset"] != "JCM":  # per-target rows hold the raw (unoriented) tau; so does its interval
            ci = kendall_ci(scores[r["proxy"]], targets[r["dataset"]], weights=summ["weights"])
            r.update(kendall_lo=ci.lo, kendall_hi=ci.hi)
            continue
        c, b = summ["ceiling"], per["beyond_size"]
        r.update(kendall_lo=per["jcm"].lo, kendall_hi=per["jcm"].hi, headroom=per["headroom"],
                 ceiling=c.estimate, ceiling_lo=c.lo, ceiling_hi=c.hi, beyond_size=b.estimate,
                 beyond_size_lo=b.lo, beyond_size_hi=b.hi, n_boot=cfg.n_boot,
                 ceiling_beyond_size=summ["ceiling_beyond_size"].estimate)
        for ref, d in per["diff"].items():
            r.update({f"diff_{ref}": d.estimate, f"diff_lo_{ref}": d.lo, f"diff_hi_{ref}": d.hi,
                      f"p_{ref}": d.p, f"beats_{ref}": d.verdict})
    return rows


def _ci(r: dict, est: str, lo: str, hi: str) -> str:
    if est not in r or not np.isfinite(r[est]):
        return "—"
    return f"{r[est]:.3f} [{r[lo]:.3f}, {r[hi]:.3f}]"


def summary_markdown(rows: list[dict]) -> str:
    """Per proxy: JCM with its interval, paired differences vs the references, headroom, and
    the partial tau given #params; then the ceiling."""
    jr = [r for r in rows if r["dataset"] == "JCM"]
    head = ["proxy", "JCM [95% CI]"] + [f"Δ vs {ref} [CI], p | beats {ref}" for ref in BASELINES] + \
        ["headroom", "partial τ given #params [CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(head) + len(BASELINES))]
    for r in jr:
        negated = " (negated)" if r.get("orientation") == -1 else ""
        cells = [r["proxy"] + negated, _ci(r, "kendall", "kendall_lo", "kendall_hi")]
        for ref in BASELINES:
            if f"diff_{ref}" in r:
                cells += [f"{_ci(r, f'diff_{ref}', f'diff_lo_{ref}', f'diff_hi_{ref}')}, p={r[f'p_{ref}']:.3f}",
                          r[f"beats_{ref}"]]
            else:
                cells += ["—", "—"]
        cells += [f"{r['headroom']:.2f}" if np.isfinite(r["headroom"]) else "—",
                  _ci(r, "beyond_size", "beyond_size_lo", "beyond_size_hi")]
        lines.append("| " + " | ".join(cells) + " |")
    r0 = jr[0]
    lines.append(f"\nceiling (rank-sum oracle over the targets): JCM {_ci(r0, 'ceiling', 'ceiling_lo', 'ceiling_hi')}"
                 f" on {r0['n']} archs (its partial τ given #params: {r0['ceiling_beyond_size']:.3f}); "
                 "headroom = (JCM - JCM_params) / (ceiling - JCM_params); 95% percentile intervals from "
                 f"{r0['n_boot']} paired bootstrap resamples of the archs"
                 + ("; a proxy marked (negated) ranks these archs against their accuracy, and its JCM is its "
                    "negation's, oriented on the same archs" if any(r.get("orientation") == -1 for r in jr) else ""))
    return "\n".join(lines)
