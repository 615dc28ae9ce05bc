"""``labels.md`` and ``labels.png`` of a label-budget study (``discovery.labels``): which method to
use at which K in plain words, then per benchmark and pooled, each method's mean JCM over the draws
with its interval and its paired difference to discovery."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from autoprox.eval.few_labels import DISCOVERY, METHODS, pooled_difference, summary
from autoprox.eval.plots import figure

TIE = 5e-4  # mean JCMs closer than this are one figure (a re-selected candidate is often a zoo formula)
LABEL_NAMES = {"discovery": "discovery (candidates re-selected by the K labels)",
               "discovery seeded": "discovery seeded (more generations, fitness the same rule)"}


def _fmt(iv: Any) -> str:
    return "-" if iv is None or not np.isfinite(iv.estimate) else f"{iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"


def _diff(d: Any) -> str:
    if d is None or not np.isfinite(d.lo):
        return "-"
    return f"{d.estimate:+.3f} [{d.lo:.3f}, {d.hi:.3f}], p {d.p:.3f}, {d.verdict}"


def _benches(doc: dict) -> dict[str, list[dict]]:
    return {t: b["rows"] for t, b in doc["benchmarks"].items() if b.get("rows")}


def _means(rows: Sequence[dict], k: int) -> dict[str, float]:
    at = [r for r in rows if r["k"] == k]
    return {m: float(np.mean([r["tau"][m] for r in at])) for m in METHODS if at and m in at[0]["tau"]}


HOW = {"ranker": "autoprox fit --model ranker", "surrogate": "autoprox fit --model surrogate",
       "zc surrogate": "autoprox fit --model zc-surrogate"}  # the proxy file a user's own labels give


def advice(doc: dict) -> str:
    """The first paragraph: per K, the method with the best mean JCM pooled over the benchmarks,
    and where discovery stands against every alternative."""
    benches = _benches(doc)
    if not benches:
        return "No benchmark gave a discovery to study (no source run could pick a proxy)."
    parts = []
    for k in doc["ks"]:
        per = [_means(rows, k) for rows in benches.values()]
        per = [p for p in per if p]
        if len(per) != len(benches):
            continue
        pooled = {m: float(np.mean([p[m] for p in per])) for m in per[0] if all(m in p for p in per)}
        top = max(pooled.values())
        best = " = ".join(f"**{m}**" + (f" (`{HOW[m]}`)" if m in HOW else "") for m in pooled if pooled[m] >= top - TIE)
        level = sum(max(v for m, v in p.items() if m in DISCOVERY)
                    >= max(v for m, v in p.items() if m not in DISCOVERY) - TIE for p in per)
        who = "no labels" if k == 0 else f"{k} labels"
        parts.append(f"with {who}, use {best} (mean JCM {top:.3f} over {len(per)} benchmark{'s' * (len(per) > 1)}; discovery "
                     f"{pooled['discovery']:.3f}; a discovery-based method level with or above every alternative on "
                     f"{level} of {len(per)})")
    cross = crossovers(doc)
    tail = ("" if not cross else " The one-hot surrogate first beats discovery at K = "
            + ", ".join(f"{k if k is not None else 'none measured'} on {t}" for t, k in cross.items()) + ".")
    return "At a label budget of K trained archs of your own space: " + "; ".join(parts) + "." + tail


def crossovers(doc: dict) -> dict[str, int | None]:
    """Per benchmark, the smallest K whose mean surrogate JCM is above discovery's."""
    out = {}
    for t, rows in _benches(doc).items():
        ks = [k for k in doc["ks"] if k > 0 and "surrogate" in _means(rows, k)]
        out[t] = next((k for k in ks if _means(rows, k)["surrogate"] > _means(rows, k)["discovery"]), None)
    return out


def labels_markdown(doc: dict) -> str:
    benches = _benches(doc)
    lines = [advice(doc), "",
             f"Each benchmark held out in turn: discovery ran on the others (all their labels); then {doc['draws']} "
             f"seeded draws of K labelled archs of the held-out benchmark (K = 0: one draw, every arch a test arch), "
             f"every method fitted on the same K labels and scored on the same test archs. JCM ({doc['jcm']}) on "
             f"the test archs, mean over the draws [95% CI over two-level resamples: the draws, then each draw's test "
             f"archs; K = 0: the archs]. "
             f"Discovery at K > 0 re-selects among its candidates by (1 - w) source JCM + w tau on the K labels, "
             f"w = K / (K + 20)." + (f" Discovery seeded runs {doc['seed_steps']} more generations on each draw from "
                                     f"the candidates that rule ranks first, the rule its fitness, and takes its best."
                                     if doc.get("seed_steps") else ""), ""]
    for t, b in doc["benchmarks"].items():
        if not b.get("rows"):
            why = ("the source run picked nothing" if b.get("pick") is None else
                   f"no label budget of {doc['ks']} leaves 3 test archs of its {b.get('n')}")
            lines += [f"## {t}", "", f"no figures from {'+'.join(b['sources'])}: {why}", ""]
            continue
        rows = b["rows"]
        ks = sorted({r["k"] for r in rows})
        cost = b.get("seeded_runs") or []
        lines += [f"## {t} ({b['n']} archs; discovered on {'+'.join(b['sources'])}; {len(b['candidates'])} "
                  f"candidates)", ""]
        if cost:
            lines += [f"Seeded runs: {len(cost)}, {sum(c['evals'] for c in cost)} proxies evaluated in "
                      f"{sum(c['seconds'] for c in cost):.0f} s (one scored on an earlier draw is read from memory).", ""]
        lines += ["| method | " + " | ".join(f"K = {k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        figs = {(m, k): summary(rows, m, k) for m in METHODS for k in ks}
        for m in METHODS:
            lines.append(f"| {LABEL_NAMES.get(m, m)} | " + " | ".join(_fmt(figs[m, k][0] if figs[m, k] else None)
                                                                  for k in ks) + " |")
        lines += ["", "Discovery minus each method [95% CI], p, whether discovery is better:", "",
                  "| method | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for m in METHODS[1:]:
            lines.append(f"| {m} | " + " | ".join(_diff(figs[m, k][1] if figs[m, k] else None) for k in ks) + " |")
        first = {m: {k: np.mean([r["first"][m] for r in rows if r["k"] == k and m in r["first"]] or [np.nan])
                     for k in ks} for m in METHODS}
        lines += ["", f"Accuracy ({b['targets'][0]}) of the test arch each method ranks first, mean over the draws:", "",
                  "| method | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        lines += [f"| {m} | " + " | ".join("-" if not np.isfinite(first[m][k]) else f"{first[m][k]:.2f}" for k in ks)
                  + " |" for m in METHODS]
        lines.append("")
    if len(benches) > 1:
        lines += [f"## Pooled over {', '.join(benches)} (benchmarks weighed evenly)", "",
                  "| method | " + " | ".join(f"K = {k}" for k in doc["ks"]) + " |", "|---|" + "---|" * len(doc["ks"])]
        for m in METHODS[1:]:
            lines.append(f"| discovery - {m} | " + " | ".join(_diff(pooled_difference(benches, m, k))
                                                            for k in doc["ks"]) + " |")
    return "\n".join(lines) + "\n"


def labels_figure(doc: dict) -> "Any":
    """JCM against K: one panel per benchmark, one line per method, the draws' intervals shaded."""
    benches = _benches(doc)
    fig = figure(4.2 * max(1, len(benches)), 3.6)
    axes = fig.subplots(1, max(1, len(benches)), squeeze=False)[0]
    for ax, (t, rows) in zip(axes, benches.items()):
        ks = sorted({r["k"] for r in rows})
        for m in METHODS:
            pts = [(k, summary(rows, m, k)) for k in ks]
            pts = [(k, s[0]) for k, s in pts if s is not None]
            if not pts:
                continue
            x = [k for k, _ in pts]
            line, = ax.plot(x, [iv.estimate for _, iv in pts], marker="o", ms=3, lw=2.2 if m == "discovery" else 1.2,
                            label=m)
            ax.fill_between(x, [iv.lo for _, iv in pts], [iv.hi for _, iv in pts], color=line.get_color(), alpha=0.12)
        ax.set_title(t)
        ax.set_xlabel("labelled archs K")
        ax.set_ylabel("JCM on the test archs")
        ax.grid(alpha=0.3)
    if benches:
        axes[-1].legend(fontsize=7, loc="lower right")
    return fig
