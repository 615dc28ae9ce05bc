"""Outputs of ``autoprox search``: result.yaml, history.csv, scores.png, regret and top-k tables."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import yaml

from autoprox.core.io import atomic_write_many
from autoprox.eval.plots import figure, png_bytes, score_axis
from autoprox.eval.uncertainty import (LEVEL, N_BOOT, NAN_INTERVAL, Interval, kendall_ci, resample_weights,
                                       statistic_ci)
from autoprox.archsearch.propose import order_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from autoprox.data.benchmark import Benchmark
    from autoprox.archsearch.config import SearchResult

HISTORY_COLUMNS = ("index", "score", "num_params", "flops", "origin", "bench_index", "arch")
REGRET_COLUMNS = ("proxy", "space", "target", "n", "pick", "pick_acc", "rank", "best_acc", "regret",
                  "regret_lo", "regret_hi", "kendall", "kendall_lo", "kendall_hi", "n_boot")


def progress_callback(prog: Any) -> Callable[[int, int, float | None], None]:
    """The search's progress line (a ``core.progress.Progress``), as the CLI and the API print it:
    candidates scored of the budget and the best score so far."""
    return lambda done, total, best: prog.update(done, total, None if best is None else f"best {best:.4g}")


def history_csv(history: Sequence[dict]) -> str:
    """Every scored candidate, one row each; the arch as compact JSON."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for h in history:
        row = {k: h.get(k, "") for k in HISTORY_COLUMNS}
        row["score"] = repr(float(h["score"]))
        row["arch"] = json.dumps(h["arch"], separators=(",", ":"))
        w.writerow(row)
    return buf.getvalue()


def _order(history: Sequence[dict], minimize: bool) -> np.ndarray:
    """Positions in ``history`` of the finite-scored candidates, best first (as ``ranked``)."""
    key = order_key(minimize)
    return np.array([i for i, h in sorted(enumerate(history), key=lambda t: key(t[1]))
                     if h["score"] is not None and math.isfinite(h["score"])], dtype=np.int64)


def _regret(w: np.ndarray, order: np.ndarray, acc: np.ndarray) -> float:
    """Regret of the pick among the archs drawn by count vector ``w``: the best drawn accuracy minus
    the accuracy of the first drawn arch of ``order`` (NaN if no finite-scored arch was drawn)."""
    present = w[order] > 0
    if not present.any():
        return math.nan
    return float(acc[w > 0].max() - acc[order[int(present.argmax())]])


def _cis(order: np.ndarray, scores: np.ndarray, acc: np.ndarray, w: np.ndarray | None,
         level: float) -> tuple[Interval, Interval]:
    """(regret, Kendall tau of score vs accuracy over the finite-scored archs), with intervals."""
    if w is None:  # fewer than two archs: no resampling
        return Interval(_regret(np.ones(len(acc)), order, acc), math.nan, math.nan), NAN_INTERVAL
    reg = statistic_ci(lambda v: _regret(v, order, acc), len(acc), weights=w, level=level)
    f = np.isfinite(scores)
    tau = kendall_ci(scores[f], acc[f], weights=w[:, f], level=level) if f.sum() >= 2 else NAN_INTERVAL
    return reg, tau


def regret_rows(proxy: str, space: str, history: Sequence[dict], bench: "Benchmark", targets: Sequence[str],
                minimize: bool = False, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> list[dict]:
    """Per target: the pick (the best-scoring candidate, as ``ranked``), its true accuracy, its rank
    among the scored labelled archs (1 = best; ties share the better rank), the best accuracy,
    regret = best - pick, and the Kendall tau of accuracy against the score oriented as the search
    reads it (negated under ``minimize``, so that a good proxy has a positive tau either way).
    Regret and tau carry bootstrap percentile intervals over the archs: ``n_boot`` resamples drawn
    with ``seed``, shared by every target; each resample re-picks its best-scoring arch."""
    idx = np.array([h["bench_index"] for h in history], dtype=np.int64)
    scores = np.array([math.nan if h["score"] is None else h["score"] for h in history], dtype=np.float64)
    scores = -scores if minimize else scores
    order = _order(history, minimize)
    w = resample_weights(len(idx), n_boot, seed) if len(idx) >= 2 else None
    rows = []
    for t in targets:
        acc = bench.values(t, idx)
        best = float(acc.max())
        if order.size:
            reg, tau = _cis(order, scores, acc, w, level)
            a = float(acc[order[0]])
            pick = {"pick": int(idx[order[0]]), "pick_acc": a, "rank": int((acc > a).sum()) + 1}
        else:  # every score NaN: nothing picked
            reg, tau = NAN_INTERVAL, NAN_INTERVAL
            pick = {"pick": None, "pick_acc": math.nan, "rank": None}
            best = math.nan
        rows.append({"proxy": proxy, "space": space, "target": t, "n": len(idx), **pick, "best_acc": best,
                     "regret": reg.estimate, "regret_lo": reg.lo, "regret_hi": reg.hi, "kendall": tau.estimate,
                     "kendall_lo": tau.lo, "kendall_hi": tau.hi, "n_boot": n_boot})
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.2f}"
    return "-" if v is None else str(v)


def _ci_cell(r: dict, key: str) -> str:
    """``estimate [lo, hi]``; the estimate alone where the interval is undefined."""
    if math.isnan(r[f"{key}_lo"]):
        return _cell(r[key])
    return f"{_cell(r[key])} [{_cell(r[f'{key}_lo'])}, {_cell(r[f'{key}_hi'])}]"


def regret_markdown(rows: Sequence[dict]) -> str:
    """The regret rows as a markdown table (accuracies in %), with a footnote on the intervals."""
    pct = f"{LEVEL:.0%}"
    head = ("proxy", "space", "target", "n", "pick (record)", "pick acc", "rank", "best acc",
            f"regret [{pct} CI]", f"τ [{pct} CI]")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([_cell(r[k]) for k in REGRET_COLUMNS[:8]]
                                + [_ci_cell(r, "regret"), _ci_cell(r, "kendall")]) + " |"
              for r in rows]
    n_boot = "/".join(str(b) for b in sorted({r["n_boot"] for r in rows}))
    lines.append(f"\nIntervals: {pct} bootstrap percentile intervals over the n archs ({n_boot} resamples "
                 f"with replacement; each resample re-picks its best-scoring arch); τ: Kendall tau-b of "
                 f"accuracy vs the score as searched (negated under --minimize) over the archs with a "
                 f"finite score.")
    return "\n".join(lines)


def top_markdown(top: Sequence[dict]) -> str:
    """The top-k archs: rank, score, params and FLOPs in millions, the arch."""
    lines = ["| rank | score | params (M) | FLOPs (M) | arch |", "|---|---|---|---|---|"]
    for r in top:
        lines.append(f"| {r['rank']} | {r['score']:.6g} | {r['num_params'] / 1e6:.2f} | "
                     f"{r['flops'] / 1e6:.0f} | `{json.dumps(r['arch'], separators=(',', ':'))}` |")
    return "\n".join(lines)


def build_hint(space: str, num_classes: int, img_size: int) -> str:
    return (f"autoprox.spaces.get_space({space!r}).build(arch, num_classes={num_classes}, "
            f"img_size={img_size})")


def result_doc(res: "SearchResult") -> dict:
    """The plain-data content of result.yaml (deterministic: no timings)."""
    c = res.config
    doc: dict[str, Any] = {
        "proxy": res.proxy, "proxy_spec": c.proxy, "space": c.space,
        "strategy": "bench-only" if c.bench_only else c.strategy,
        "budget": c.budget, "scored": len(res.history),
        "nan_scores": sum(1 for h in res.history if not math.isfinite(h["score"])),
        **({} if c.bench_only else {"exhausted": res.exhausted}), "seed": c.seed, "minimize": c.minimize,
        "constraints": {"params_m": None if c.params is None else list(c.params),
                        "flops_m": None if c.flops is None else list(c.flops),
                        "num_classes": c.num_classes, "img_size": c.img_size},
        "build": build_hint(c.space, c.num_classes, c.img_size),
        "top": [{"rank": t["rank"], "score": t["score"], "num_params": t["num_params"],
                 "flops": t["flops"], "arch": t["arch"]} for t in res.top],
    }
    if res.regret is not None:
        doc["bench_only"] = {"rows": res.regret, "markdown": regret_markdown(res.regret)}
    return doc


def result_text(res: "SearchResult") -> str:
    """result.yaml: a header on how to build the found archs, then ``result_doc``."""
    c = res.config
    head = (f"# autoprox search result: the top-{len(res.top)} {c.space} archs by proxy {res.proxy!r}.\n"
            f"# Build one (arch: any entry of 'top'):\n"
            f"#   import autoprox.spaces\n#   model = {build_hint(c.space, c.num_classes, c.img_size)}\n"
            f"# or write a torch-only model file and its config for training:\n"
            f"#   autoprox build RESULT.yaml --rank 1 --out model.py\n")
    return head + yaml.safe_dump(result_doc(res), sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


def scores_figure(res: "SearchResult") -> "Figure":
    """Every scored candidate's score against its #params (M), the top-k highlighted and the
    pick (rank 1) starred and annotated; NaN scores are left out (the title counts them)."""
    pts = [h for h in res.history if h["score"] is not None and math.isfinite(h["score"])]
    fig = figure(6.5, 4.2)
    ax = fig.subplots()
    ax.scatter([h["num_params"] / 1e6 for h in pts], [h["score"] for h in pts], s=8, color="tab:gray",
               alpha=0.5, label=f"candidates ({len(pts)})")
    ax.scatter([t["num_params"] / 1e6 for t in res.top], [t["score"] for t in res.top], s=30,
               color="tab:orange", label=f"top {len(res.top)}")
    pick = res.best
    x, y = pick["num_params"] / 1e6, pick["score"]
    ax.scatter([x], [y], marker="*", s=220, color="gold", edgecolors="black", zorder=3, label="pick (rank 1)")
    xs = [h["num_params"] / 1e6 for h in pts]
    right = x > (min(xs) + max(xs)) / 2  # the label points into the plot, away from the edge
    ax.annotate(f"pick: candidate {pick['index']}\nscore {y:.4g}, {x:.2f} M params", (x, y),
                xytext=(-14 if right else 14, 22 if res.config.minimize else -28), textcoords="offset points",
                ha="right" if right else "left", fontsize=7, arrowprops={"arrowstyle": "-", "lw": 0.5},
                bbox={"boxstyle": "round", "fc": "white", "alpha": 0.85, "lw": 0})
    score_axis(ax, [h["score"] for h in pts], "y",
               "score" + (" (lower is better)" if res.config.minimize else ""))
    ax.set_xlabel("#params (M)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    nan = len(res.history) - len(pts)
    ax.set_title(f"search: proxy {res.proxy} on {res.config.space}, {len(res.history)} candidates"
                 + (f" ({nan} NaN not shown)" if nan else ""), fontsize=9)
    return fig


def write_result(out: Path, res: "SearchResult") -> None:
    """``out/result.yaml`` and ``out/scores.png``: all or none."""
    png = png_bytes(scores_figure(res))
    atomic_write_many({out / "result.yaml": result_text(res).encode(), out / "scores.png": png})
