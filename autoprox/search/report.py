"""Outputs of ``autoprox search``: result.yaml, history.csv, scores.png, regret and top-k tables."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import yaml

from autoprox.core.io import atomic_write_many
from autoprox.eval.plots import figure, png_bytes, score_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from autoprox.data.benchmark import Benchmark
    from autoprox.search.config import SearchResult

HISTORY_COLUMNS = ("index", "score", "num_params", "flops", "origin", "bench_index", "arch")
REGRET_COLUMNS = ("proxy", "space", "target", "n", "pick", "pick_acc", "rank", "best_acc", "regret")


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


def regret_rows(proxy: str, space: str, pick: dict, history: Sequence[dict], bench: "Benchmark",
                targets: Sequence[str]) -> list[dict]:
    """Per target: the pick's true accuracy, its rank among the scored (eligible) labelled archs
    (1 = best; ties share the better rank), the best accuracy, and regret = best - pick."""
    idx = [h["bench_index"] for h in history]
    rows = []
    for t in targets:
        acc = bench.values(t)
        eligible = acc[idx]
        a = float(acc[pick["bench_index"]])
        best = float(eligible.max())
        rows.append({"proxy": proxy, "space": space, "target": t, "n": len(idx),
                     "pick": int(pick["bench_index"]), "pick_acc": a,
                     "rank": int((eligible > a).sum()) + 1, "best_acc": best, "regret": best - a})
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.2f}"
    return "-" if v is None else str(v)


def regret_markdown(rows: Sequence[dict]) -> str:
    """The regret rows as a markdown table (accuracies in %)."""
    head = ("proxy", "space", "target", "n", "pick (record)", "pick acc", "rank", "best acc", "regret")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(r[k]) for k in REGRET_COLUMNS) + " |" for r in rows]
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
            f"#   import autoprox.spaces\n#   model = {build_hint(c.space, c.num_classes, c.img_size)}\n")
    return head + yaml.safe_dump(result_doc(res), sort_keys=False, width=120, default_flow_style=None)


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
