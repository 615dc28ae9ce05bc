"""Figures of autoprox's outputs: one way to draw and save them, and the figures of ``bench``.

Figures are ``matplotlib.figure.Figure`` objects drawn with the Agg renderer, never through
pyplot: nothing global (no backend switch, no open-figure registry) changes in the caller's
process, and a figure is freed when dropped. ``png_bytes`` renders one, so a verb can write its
plots together with its other files in one all-or-none ``atomic_write_many``. matplotlib is
imported inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
MAX_SCATTER_ROWS = 40  # scatter.png shows at most this many proxies (bench.csv has them all)
SPAN = 100.0  # scores whose magnitudes span more than this factor get a log (or symlog) axis


def figure(width: float, height: float) -> "Figure":
    """A new figure (inches) with constrained layout: titles and labels do not overlap."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig: "Figure") -> bytes:
    """The figure as a PNG (Agg renderer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)  # attaches itself to the figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def score_scale(values: Any) -> tuple[str, dict, str]:
    """(matplotlib scale, its keyword arguments, note for the axis label) for scores: linear
    unless their finite non-zero magnitudes span more than ``SPAN``; then log when all are
    positive, else symlog (linear within the smallest magnitude of zero)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    mag = np.abs(v[v != 0])
    if len(mag) < 2 or mag.max() <= SPAN * mag.min():
        return "linear", {}, ""
    if np.all(v > 0):
        return "log", {}, " (log scale)"
    return "symlog", {"linthresh": float(mag.min())}, f" (symlog scale, linear within ±{mag.min():.3g})"


def score_axis(ax: "Axes", values: Any, axis: str = "x", label: str = "score") -> None:
    """Scale and label the ``axis`` ('x' or 'y') of ``ax`` that shows the scores ``values``."""
    scale, kw, note = score_scale(values)
    getattr(ax, f"set_{axis}scale")(scale, **kw)
    getattr(ax, f"set_{axis}label")(label + note, fontsize=8)


def scatter_panel(ax: "Axes", x: Any, y: Any, title: str, groups: Mapping[str, Any] | None = None,
                  ylabel: str = "accuracy") -> None:
    """Score ``x`` against accuracy ``y`` (non-finite points left out), one colour per group
    (``{label: indices}``; default: one unlabelled group), small title and labels."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    for label, idx in (groups or {"": np.arange(len(x))}).items():
        idx = np.asarray(idx, dtype=int)
        idx = idx[ok[idx]]
        if len(idx):
            ax.scatter(x[idx], y[idx], s=10, label=label or None)
    score_axis(ax, x[ok])
    ax.set_title(title, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------------------------- bench figures
def tau_title(target: str, tau: float) -> str:
    """A scatter panel's title: the target and its Kendall tau as bench.csv holds it."""
    return f"{target}  τ={tau:.3f}"


def scatter_panels(rows: Sequence[dict], scores: Mapping[str, np.ndarray],
                   accuracies: Mapping[str, np.ndarray]) -> list[list[dict]]:
    """The panels of ``scatter.png``: per proxy (a row of panels, bench order), per target, its
    scores, the accuracies, and the Kendall tau of its bench row (the value bench.csv holds)."""
    grid: dict[str, list[dict]] = {}
    for r in rows:
        if r["dataset"] == "JCM":
            continue
        p, t = r["proxy"], r["dataset"]
        grid.setdefault(p, []).append({"proxy": p, "target": t, "x": scores[p], "y": accuracies[t],
                                       "tau": r["kendall"], "title": tau_title(t, r["kendall"])})
    return list(grid.values())


def scatter_figure(panels: list[list[dict]]) -> "Figure":
    """One row per proxy (at most ``MAX_SCATTER_ROWS``), one column per target."""
    shown = panels[:MAX_SCATTER_ROWS]
    cols = max(len(r) for r in shown)
    fig = figure(2.6 * cols + 0.4, 2.2 * len(shown) + 0.5)
    axes = fig.subplots(len(shown), cols, squeeze=False)
    for row, ax_row in zip(shown, axes):
        for pn, ax in zip(row, ax_row):
            scatter_panel(ax, pn["x"], pn["y"], pn["title"])
        ax_row[0].set_ylabel(f"{row[0]['proxy']}\naccuracy", fontsize=8)
        for ax in ax_row[len(row):]:
            ax.set_visible(False)
    n = len(shown[0][0]["x"])
    more = f"; first {len(shown)} of {len(panels)} proxies (bench.csv has all)" if len(panels) > len(shown) else ""
    fig.suptitle(f"proxy score vs accuracy on {n} archs (τ: Kendall, as in bench.csv){more}", fontsize=9)
    return fig


def jcm_bars(rows: Sequence[dict]) -> list[dict]:
    """The bars of ``jcm.png``: every JCM row's proxy, JCM and 95% interval, sorted by JCM
    (ascending: the best ends on top of the chart; undefined JCMs first)."""
    bars = [{"proxy": r["proxy"], "jcm": r["kendall"], "lo": r.get("kendall_lo", float("nan")),
             "hi": r.get("kendall_hi", float("nan"))} for r in rows if r["dataset"] == "JCM"]
    return sorted(bars, key=lambda b: (np.isfinite(b["jcm"]), b["jcm"] if np.isfinite(b["jcm"]) else 0.0))


def jcm_figure(rows: Sequence[dict], params_jcm: float = float("nan")) -> "Figure":
    """Horizontal bars: each proxy's JCM with its bootstrap interval, the oracle ceiling
    (dashed) and the JCM of #params (dotted)."""
    bars = jcm_bars(rows)
    fig = figure(6.0, 0.32 * len(bars) + 1.4)
    ax = fig.subplots()
    y = np.arange(len(bars))
    est, lo, hi = (np.array([b[k] for b in bars], dtype=np.float64) for k in ("jcm", "lo", "hi"))
    ax.barh(y, np.nan_to_num(est), color="tab:blue", alpha=0.8, height=0.6)
    ax.errorbar((lo + hi) / 2, y, xerr=(hi - lo) / 2, fmt="none", ecolor="black", capsize=3, lw=1,
                label="95% bootstrap CI")
    ax.set_yticks(y, [b["proxy"] + ("" if np.isfinite(b["jcm"]) else " (undefined)") for b in bars], fontsize=8)
    ceiling = next((r["ceiling"] for r in rows if r["dataset"] == "JCM" and "ceiling" in r), float("nan"))
    if np.isfinite(ceiling):
        ax.axvline(ceiling, color="tab:red", ls="--", lw=1, label=f"ceiling (oracle) {ceiling:.3f}")
    if np.isfinite(params_jcm):
        ax.axvline(params_jcm, color="gray", ls=":", lw=1.5, label=f"#params {params_jcm:.3f}")
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("JCM (Kendall τ over the targets)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=7)  # below the axes: never over a bar
    n = next((r["n"] for r in rows), 0)
    ax.set_title(f"JCM per proxy on {n} archs, best on top", fontsize=9)
    return fig


def bench_figures(rows: Sequence[dict], scores: Mapping[str, np.ndarray], accuracies: Mapping[str, np.ndarray],
                  params_jcm: float = float("nan")) -> dict[str, bytes]:
    """``scatter.png`` and ``jcm.png`` of a bench, rendered (file name -> PNG bytes)."""
    return {"scatter.png": png_bytes(scatter_figure(scatter_panels(rows, scores, accuracies))),
            "jcm.png": png_bytes(jcm_figure(rows, params_jcm))}
