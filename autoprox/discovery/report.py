"""What an evolution run leaves in ``runs/<name>/``: hall of fame, best proxy, progress, plots.

- ``hall_of_fame.yaml``: the best proxies by train JCM, each with its validation and test JCM;
- ``best.yaml``: the hall-of-fame member picked by the run's ``pick`` rule, oriented (negated when
  its train correlation is negative) so ``autoprox bench --proxy best.yaml`` reproduces it;
- ``progress.csv``: one row per step; ``jcm.png``: best/mean train JCM and the pick's
  validation JCM over time, against #params' train (and validation) JCM; ``best_vs_accuracy.png``:
  the pick's score against accuracy per (space, target), its formula on the x axis.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import yaml

from autoprox.eval.alternatives import SCALARS, Part
from autoprox.eval.bench import BASELINES
from autoprox.eval.plots import figure, png_bytes, scatter_panel
from autoprox.eval.uncertainty import N_BOOT, pooled
from autoprox.discovery.objective import FOLDS
from autoprox.proxy.export import proxy_formula, to_yaml
from autoprox.proxy.graph import DATA_FREE, GraphProxy, leaves
from autoprox.proxy.zoo import get_proxy, list_proxies
from autoprox.proxy.spec import Proxy, resolve
from autoprox.core.io import atomic_write_many

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from autoprox.discovery.loop import Run
    from autoprox.discovery.variation import VariationConfig

PROGRESS_COLUMNS = ("step", "evals", "unique", "invalid", "invalid_pct", "rejected", "best_train", "mean_train",
                    "best_fitness", "pick_val", "evals_per_s")



def step_note(row: dict, beyond_size: bool) -> str:
    """The progress note of one finished step (``Run.summary()``), as the CLI and the API print it."""
    val = "-" if row["pick_val"] is None else f"{row['pick_val']:.3f}"
    fit = f"  best fitness {row['best_fitness']:.3f}" if beyond_size else ""
    return f"evals {row['evals']} ({row['evals_per_s']:.1f}/s)  best train {row['best_train']:.3f}{fit}  pick val {val}"

def oriented(record: dict, name: str, description: str = "") -> Proxy:
    """The proxy of a history record (graph or fused), negated when its orientation is negative."""
    p = resolve(record["expression"])
    return dataclasses.replace(p.negated() if record["sign"] < 0 else p, name=name, description=description)


def _figures(r: dict) -> dict:
    keep = ("hash", "expression", "sign", "train", "val", "test", "per_space", "step")
    return {k: r[k] for k in keep if k in r} | {"formula": proxy_formula(resolve(r["expression"]))}


def run_doc(run: Run, zoo_names: Sequence[str] | None = None) -> dict:
    """Plain records of a finished (or stopped) run for ``evolve.report.write_outputs``: the hall
    of fame, progress, the pick, every zoo proxy the run's statistics can score (same folds), the
    pick's scores per (space, target) panel, the fold intervals (of every zoo proxy, or only of
    ``zoo_names``) and ``inputs``: every zoo proxy's and arch scalar's scores, which the
    alternatives (``eval.alternatives``) are chosen and fitted on. Everything is scored in one call."""
    pick = run.pick()
    zoo = dict(scorable_zoo(run.obj.families))
    inputs = input_texts(run.obj.families)
    named = dict(inputs)
    if pick is not None:
        named |= {"pick:raw": pick.record["expression"], "pick": oriented(pick.record, "pick").text}
    texts = list(dict.fromkeys(named.values()))  # every distinct text scored once
    mats = run.obj.proxy_scores(texts)
    at = {name: texts.index(t) for name, t in named.items()}
    row = (lambda name: {sd.name: mats[sd.name][at[name]] for sd in run.obj.spaces})
    doc: dict = {"name": run.out.name, "mode": run.cfg.mode, "spaces": list(run.cfg.objective.spaces),
                 "jcm": run.cfg.objective.jcm, "targets": list(dict.fromkeys(t for sd in run.obj.spaces
                                                                             for t in sd.targets)),
                 "hall_of_fame": [i.record for i in run.hof], "progress": list(run.progress_rows),
                 "pick": None if pick is None else pick.record, "panels": [],
                 "folds": {k: len(v) for k, v in run.obj.spaces[0].folds.items()},
                 "zoo": [(n, run.obj.record(row(n))) for n in zoo],
                 "inputs": {n: row(n) for n in inputs}}
    if pick is None:
        return doc
    doc["panels"] = [{"space": sd.name, "target": t, "scores": row("pick")[sd.name], "accuracy": y,
                      "folds": sd.folds} for sd in run.obj.spaces for t, y in sd.targets.items()]
    doc["scores"] = {n: row(n) for n in ("pick", *BASELINES) if n in at}  # for out-of-fold tests
    valid = [(n, r) for n, r in doc["zoo"] if r.get("reason") is None and (zoo_names is None or n in zoo_names)]
    rows = lambda names: {sd.name: mats[sd.name][[at[n] for n in names]] for sd in run.obj.spaces}  # noqa: E731
    # the pick (unoriented, with its record's sign), the valid zoo proxies, then #params (the last row)
    doc["intervals"] = fold_intervals([("pick", pick.record), *valid],
                                      rows(["pick:raw", *(n for n, _ in valid), "num_params"]),
                                      run.obj.spaces, run.cfg.objective.jcm, weights=run.cfg.objective.weights)
    if "depth_width" in zoo:  # the pick against the shape baseline too, on the same archs
        doc["intervals"]["pick_vs_depth_width"] = fold_intervals(
            [("pick", pick.record)], rows(["pick:raw", "depth_width"]), run.obj.spaces, run.cfg.objective.jcm,
            weights=run.cfg.objective.weights)["pick"]
    return doc


def input_parts(inputs: dict, spaces: Sequence) -> dict[str, Part]:
    """Each space's ``alternatives.Part`` (every arch) from a run document's ``inputs``."""
    return {sd.name: Part({n: v[sd.name] for n, v in inputs.items()}, sd.targets, sd.archs) for sd in spaces}


def input_texts(families: Sequence[str]) -> dict[str, str]:
    """What the alternatives read, by name: every zoo proxy ``families`` can score, then the arch
    scalars (each scalar's text is its name)."""
    return {n: str(p.expr) for n, p in scorable_zoo(families)} | {s: s for s in SCALARS}


def scorable_zoo(families: Sequence[str]) -> list[tuple[str, GraphProxy]]:
    """Every zoo proxy (name, graph) that statistics of ``families`` can score (fused ones aside)."""
    usable = set(families) | DATA_FREE
    zoo = [(n, get_proxy(n)) for n in list_proxies()]
    return [(n, p.parts[0]) for n, p in zoo if not p.fused and leaves(p.parts[0].expr) <= usable]


def read_hall_of_fame(folder: Path, variation: "VariationConfig") -> list[dict]:
    """A run folder's hall-of-fame records: ``hall_of_fame.yaml``, or for a run cut before its
    report, the checkpoint's hall of fame (last finished step) looked up in ``history.jsonl``."""
    if (folder / "hall_of_fame.yaml").is_file():
        return yaml.safe_load((folder / "hall_of_fame.yaml").read_text(encoding="utf-8"))
    from autoprox.discovery.variation import to_proxy
    lines = (folder / "history.jsonl").read_text(encoding="utf-8").splitlines()
    by_hash = {r["hash"]: r for r in map(json.loads, lines)}
    genomes = json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))["hall_of_fame"]
    return [by_hash[to_proxy(g, variation).hash] for g in genomes]


def write_outputs(out: Path, doc: dict) -> None:
    """Hall of fame, best proxy, progress table, plots and summary of a finished (or stopped) run,
    from the plain records of ``run_doc``: all written or none (a full disk)."""
    hof = [_figures(r) for r in doc["hall_of_fame"]]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PROGRESS_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(doc["progress"])
    files = {out / "hall_of_fame.yaml": yaml.safe_dump(hof, sort_keys=False, allow_unicode=True, width=120).encode(),
             out / "progress.csv": buf.getvalue().encode()}
    r = doc["pick"]
    if r is not None:
        desc = (f"evolved by autoprox ({doc['mode']}, {'+'.join(doc['spaces'])}): "
                f"JCM train {r['train']:.3f}, val {r['val']:.3f}"
                + (f", test {r['test']:.3f}" if r.get("test") is not None else ""))
        best = oriented(r, doc["name"], desc)
        files |= {out / "best.yaml": to_yaml(best).encode(),
                  out / "jcm.png": png_bytes(progress_figure(doc["progress"], dict(doc["zoo"]).get("params"))),
                  out / "best_vs_accuracy.png": png_bytes(scores_figure(doc["panels"], best.name,
                                                                        proxy_formula(best))),
                  out / "summary.md": summary_table(doc).encode()}
    atomic_write_many(files)


def summary_table(doc: dict) -> str:
    """Markdown: the pick against every zoo proxy the run's statistics can score, per fold."""
    rows = [("**pick** " + doc["name"], doc["pick"])] + sorted(
        doc["zoo"], key=lambda t: -(t[1]["val"] if t[1]["val"] is not None else -9))
    lines = [f"JCM ({doc['jcm']}, targets {', '.join(doc['targets'])}) on {'+'.join(doc['spaces'])}; "
             f"folds: " + ", ".join(f"{k} {v}" for k, v in doc["folds"].items()) + " archs.",
             "", "| proxy | train [95% CI] | val [95% CI] | test [95% CI] |", "|---|---|---|---|"]
    fmt = (lambda v: "-" if v is None else f"{v:.3f}")
    ivs = doc.get("intervals", {})
    lines = [verdict_sentence(doc["pick"], ivs.get("pick", {}), ivs.get("pick_vs_depth_width", {})), ""] + lines
    for i, (n, r) in enumerate(rows):
        iv = ivs.get("pick" if i == 0 else n, {})
        lines.append(f"| {n} | " + " | ".join(fmt(r[f]) + _ci(iv.get(f)) for f in FOLDS) + " |")
    if "pick" in ivs:
        d = ivs["pick"]
        lines += ["", "The pick against #params on the same archs (paired bootstrap, "
                  f"{ivs['n_boot']} resamples per space; [95% CI], two-sided p):", "",
                  "| fold | JCM(pick) - JCM(params) | p | beats #params |", "|---|---|---|---|"]
        lines += [f"| {f} | {d[f + '_diff']['estimate']:.3f}{_ci(d[f + '_diff'])} | {d[f + '_diff']['p']:.3f} | "
                  f"{d[f + '_diff']['verdict']} |" for f in FOLDS if f + "_diff" in d]
    return "\n".join(lines) + "\n"


def verdict_sentence(pick: dict, iv: dict, iv_dw: dict | None = None) -> str:
    """In words: the pick's formula, whether it reads statistics at all, and whether it beats #params
    and ``depth_width`` on validation (and test)."""
    p = resolve(pick["expression"])
    text = f"Pick: `{proxy_formula(p)}`" + (" (negated)." if pick["sign"] < 0 else ".")
    if not p.families:
        text += (" It reads no statistics: it is a function of the arch's shape alone, computed without "
                 "building a model.")
    for fold in ("val", "test"):
        said = [_against(d, name) for name, d in (("#params", iv.get(fold + "_diff")),
                                                   ("depth_width", (iv_dw or {}).get(fold + "_diff"))) if d]
        if said:
            text += f" On the {'validation' if fold == 'val' else 'test'} fold it " + "; it ".join(said) + "."
    return text


def _against(d: dict, name: str) -> str:
    word = {"yes": f"beats {name}", "no": f"is worse than {name}", "undefined": f"cannot be compared with {name}"
            }.get(d["verdict"], f"does not beat {name} significantly")
    return f"{word} (JCM difference {d['estimate']:+.3f}{_ci(d)}, p = {d['p']:.3f})"


def _ci(iv: dict | None) -> str:
    return "" if not iv or iv["lo"] != iv["lo"] else f" [{iv['lo']:.3f}, {iv['hi']:.3f}]"


def fold_intervals(named: list[tuple[str, dict]], mats: dict[str, np.ndarray], spaces: list,
                   variant: str, n_boot: int = N_BOOT, seed: int = 0,
                   weights: Mapping[str, float] | None = None) -> dict:
    """Per proxy (``(name, record)``; rows of ``mats`` in that order, then #params) and fold: the
    bootstrap interval of its fold JCM (oriented by its record's sign, archs resampled per space,
    spaces weighted as ``objective.weights``: ``uncertainty.pooled``), and for the pick the
    paired difference vs #params."""
    out: dict = {"n_boot": n_boot}
    for i, (name, rec) in enumerate(named):
        figs: dict = {}
        for fold in FOLDS:
            held = [(sd, sd.folds[fold]) for sd in spaces if len(sd.folds.get(fold, ())) >= 2]
            parts = [(mats[sd.name][i][idx], mats[sd.name][-1][idx], {t: y[idx] for t, y in sd.targets.items()})
                     for sd, idx in held]
            if not parts:
                continue
            jcm_iv, diff = pooled(parts, (rec["sign"], 1), n_boot, seed, variant=variant,
                                  space_weights=[(weights or {}).get(sd.name, 1.0) for sd, _ in held])
            figs[fold] = {"estimate": jcm_iv.estimate, "lo": jcm_iv.lo, "hi": jcm_iv.hi}
            if name == "pick":
                figs[fold + "_diff"] = {"estimate": diff.estimate, "lo": diff.lo, "hi": diff.hi, "p": diff.p,
                                        "verdict": diff.verdict}
        out[name] = figs
    return out


def progress_figure(rows: list[dict], params: dict | None = None) -> "Figure":
    """Best and mean train JCM and the pick's validation JCM per step (integer ticks), with
    #params' train JCM (dashed) and validation JCM (dotted) when its ``params`` record has them."""
    from matplotlib.ticker import MaxNLocator
    fig = figure(6, 3.5)
    ax = fig.subplots()
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["best_train"] for r in rows], marker=".", label="best train JCM")
    ax.plot(steps, [r["mean_train"] for r in rows], marker=".", label="mean train JCM (valid)")
    ax.plot(steps, [r["pick_val"] if r["pick_val"] is not None else float("nan") for r in rows], marker=".",
            label="pick's validation JCM")
    for fold, ls in (("train", "--"), ("val", ":")):
        v = (params or {}).get(fold)
        if v is not None and v == v:
            ax.axhline(v, color="gray", ls=ls, lw=1.2,
                       label=f"#params {'train' if fold == 'train' else 'validation'} JCM ({v:.3f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("JCM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def scores_figure(panels: list[dict], title: str, formula: str = "") -> "Figure":
    """One panel per (space, target), a row per space: the pick's score vs accuracy, coloured by
    fold; the pick's formula (wrapped to the figure's width) as the figure's x label."""
    spaces = list(dict.fromkeys(pn["space"] for pn in panels))
    cols = max(sum(pn["space"] == sp for pn in panels) for sp in spaces)
    fig = figure(3.2 * cols + 0.3, 3.2 * len(spaces) + 0.4)
    grid = fig.subplots(len(spaces), cols, squeeze=False)
    used = []
    for r, sp in enumerate(spaces):
        for c, pn in enumerate(pn for pn in panels if pn["space"] == sp):
            scatter_panel(grid[r][c], pn["scores"], pn["accuracy"], f"{pn['space']} {pn['target']}",
                          groups=pn["folds"])
            used.append(grid[r][c])
    for ax in grid.flat:
        if ax not in used:
            ax.set_axis_off()
    used[0].legend(fontsize=7)
    fig.suptitle(f"{title}: the pick's score vs accuracy", fontsize=10)
    if formula:
        width = max(40, int(14 * 3.2 * cols))  # about 14 characters per inch at 8 pt
        fig.supxlabel(textwrap.fill(f"score = {formula}", width), fontsize=8)
    return fig
