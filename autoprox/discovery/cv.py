"""``autoprox evolve --cv K``: the honest figure of the engine, and a pick made without test data.

The whole discovery runs K times (``OUT/fold-<i>/``), each time with fold i of a seeded K-way
partition of every space's archs held out as its test fold (train and validation come from
the rest). Each run picks by its rule (``pick``: validation JCM, or train and validation JCM
together), as usual; its pick's JCM on the held-out fold is
out-of-fold. ``OUT/cv.md`` lists them beside #params and the structural baseline on the same
folds, and beside the alternatives a user with labels has (``eval.alternatives``, chosen and
fitted on each fold's training and validation archs), with paired tests and search regret. The
proxy a user gets (``OUT/best.yaml``) comes from one more run, ``OUT/final/``, on train and
validation folds only (``test_fraction: 0``), picked by the same rule: no rule that
chooses it ever reads a test fold. Every run checkpoints; ``--resume`` continues the sequence.
``--fold I`` (or ``final``) runs one of them alone, so the K + 1 runs can go to K + 1 processes or
machines sharing ``OUT``; ``--cv K --resume`` then gathers them (finished runs only reload).
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, TypedDict

import numpy as np

from autoprox.core.io import atomic_write_text
from autoprox.eval import alternatives
from autoprox.eval.fitness import jcm
from autoprox.eval.uncertainty import N_BOOT, headroom, oracle_scores, pooled_pair
from autoprox.discovery.config import PICK_RULES, EvolveConfig
from autoprox.discovery.loop import Run
from autoprox.discovery.report import input_parts
from autoprox.discovery.run import evolve, numbered
from autoprox.eval.bench import BASELINES


class FoldRow(TypedDict):
    """One held-out fold of ``cv.md`` (plain data). ``spaces``: per space the held-out JCM of the pick,
    the baselines and alternatives (name -> JCM), ``ceiling``, ``held`` (name -> (sign, held-out
    scores)) and ``targets`` (target -> held-out accuracies)."""

    fold: int
    pick: str | None
    val: float | None
    test: float | None
    params: float | None
    depth_width: float | None
    spaces: dict[str, dict[str, Any]]
    alternatives: dict[str, str]            # what each learned alternative became, in words
    evals_per_s: float | None


def _fold_row(i: int, run: Run) -> FoldRow:
    """One held-out fold: the pick's expression, validation and held-out JCM, the baselines' on the
    same archs, and per space the held-out JCM of the pick, the baselines, the alternatives (chosen
    and fitted on the fold's training and validation archs) and the oracle ceiling."""
    doc = run.report or {}
    pick = doc.get("pick") or {}
    zoo = dict(doc.get("zoo", []))
    row: Any = {"fold": i, "pick": pick.get("expression"), "val": pick.get("val"), "test": pick.get("test"),
           "spaces": {}, "alternatives": {},
           "evals_per_s": run.progress_rows[-1]["evals_per_s"] if run.progress_rows else None}
    for b in BASELINES:
        row[b] = zoo[b]["test"] if b in zoo else None
    scores, signs = doc.get("scores", {}), {"pick": 1} | {b: zoo[b]["sign"] for b in BASELINES if b in zoo}
    alts = _alternatives(run, doc)
    if alts is not None:
        row["alternatives"] = alts[0].describe()
    for sd in run.obj.spaces:
        per = {n: r.get("per_space", {}).get(sd.name, {}).get("test") for n, r in (("pick", pick), *zoo.items())
               if n in ("pick", *BASELINES)}
        idx = sd.folds.get("test", ())
        held = {n: (signs[n], v[sd.name][idx].tolist()) for n, v in scores.items() if n in signs}  # held-out archs
        if alts is not None and len(idx) >= 2:
            part = alts[1][sd.name].subset(idx)
            for n, v in alts[0].score(part).items():
                held.setdefault(n, (1, v.tolist()))
                per.setdefault(n, alternatives.jcm_of(v, part.targets, run.cfg.objective.jcm))
        row["spaces"][sd.name] = per | {"ceiling": held_out_ceiling(sd, run.cfg.objective.jcm), "held": held,
                                        "targets": {t: y[idx].tolist() for t, y in sd.targets.items()}}
    return row


def _alternatives(run: Run, doc: dict) -> tuple[alternatives.Fitted, dict[str, alternatives.Part]] | None:
    """The alternatives fitted on every space's training and validation archs, and each space's
    ``Part`` (all archs), or None for a run without a pick or the inputs."""
    inputs = doc.get("inputs")
    if not inputs or not doc.get("pick"):
        return None
    parts = input_parts(inputs, run.obj.spaces)
    train = [parts[sd.name].subset(np.concatenate([sd.folds[f] for f in ("train", "val") if f in sd.folds]))
             for sd in run.obj.spaces]
    return alternatives.fit(train, run.cfg.objective.jcm), parts


def held_out_ceiling(sd: Any, variant: str) -> float | None:
    """JCM of the rank-sum oracle (the targets' own agreement) on a space's held-out fold."""
    idx = sd.folds.get("test", ())
    if len(idx) < 2:
        return None
    ys = {t: y[idx] for t, y in sd.targets.items()}
    fit = jcm(oracle_scores(ys), ys, variant)  # type: ignore[arg-type]
    return fit.jcm if fit.valid else None


def _mean(values: list) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


def cv_markdown(rows: list[FoldRow], k: int, pick: str = "val", variant: str = "mean_tau",
                weights: Mapping[str, float] | None = None) -> str:
    """``cv.md``: the folds' table, per-space means and paired tests (JCM ``variant``; the spaces
    pooled with the objective's ``weights``, as each fold's own figure is)."""
    fmt = (lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}")
    lines = [f"Out-of-fold JCM of the engine's picks, {k} folds (each pick chosen {PICK_RULES[pick]}, "
             f"never on its held-out fold: `pick: {pick}`).", "",
             "| fold | pick (validation JCM) | pick, held-out fold | " + " | ".join(f"{b}, same fold" for b in BASELINES)
             + " |", "|---|---|---|" + "---|" * len(BASELINES)]
    for r in rows:
        lines.append(f"| {r['fold']} | `{r['pick']}` ({fmt(r['val'])}) | {fmt(r['test'])} | "
                     + " | ".join(fmt(r[b]) for b in BASELINES) + " |")
    means = {c: _mean([r[c] for r in rows]) for c in ("test", *BASELINES)}
    lines.append("| mean ± s.e. | | " + " | ".join(f"{fmt(m)} ± {fmt(s)}" for m, s in means.values()) + " |")
    diffs = [r["test"] - r["params"] for r in rows if r["test"] is not None and r["params"] is not None]
    wins = sum(d > 0 for d in diffs)
    lines += ["", f"The engine beats #params on {wins} of {len(diffs)} held-out folds "
              f"(mean difference {fmt(_mean(diffs)[0])} ± {fmt(_mean(diffs)[1])})."]
    speeds = [r["evals_per_s"] for r in rows if r.get("evals_per_s")]
    if speeds:
        lines.append(f"Throughput of the fold runs: {', '.join(f'{v:.2f}' for v in speeds)} proxies scored per second "
                     "(every arch of every space per proxy).")
    return "\n".join(lines + _space_lines(rows, fmt) + _paired_lines(rows, variant, weights)) + "\n"


def _space_lines(rows: list[FoldRow], fmt: Callable[[Any], str]) -> list[str]:
    """Per space, means over the held-out folds: the pick, the baselines, the oracle ceiling, and
    the share of the #params-to-ceiling headroom the pick and depth_width close."""
    spaces = list(dict.fromkeys(sp for r in rows for sp in r.get("spaces", {})))
    if not spaces:
        return []
    cols = ("pick", *BASELINES, "ceiling")
    lines = ["", "Per space, mean ± s.e. over the held-out folds; headroom = (JCM - JCM_params) / "
             "(ceiling - JCM_params) of the means:", "",
             "| space | " + " | ".join(cols) + " | headroom, pick | headroom, depth_width |", "|---|" + "---|" * (len(cols) + 2)]
    for sp in spaces:
        m = {c: _mean([r["spaces"].get(sp, {}).get(c) for r in rows]) for c in cols}
        rooms = [headroom(m[c][0], m["params"][0], m["ceiling"][0]) for c in ("pick", "depth_width")]
        lines.append(f"| {sp} | " + " | ".join(f"{fmt(e)} ± {fmt(se)}" for e, se in m.values()) + " | "
                     + " | ".join(f"{x:.0%}" if math.isfinite(x) else "-" for x in rooms) + " |")
    return lines


def fold_runs(cfg: EvolveConfig, k: int) -> dict[str, EvolveConfig]:
    """The runs of a K-fold discovery by folder name: ``fold-0`` .. ``fold-<K-1>``, then ``final``."""
    obj = cfg.objective
    runs = {f"fold-{i}": dataclasses.replace(cfg, objective=dataclasses.replace(obj, cv_folds=k, cv_fold=i))
            for i in range(k)}
    return runs | {"final": dataclasses.replace(cfg, objective=dataclasses.replace(obj, test_fraction=0.0))}


def cross_validate(cfg: EvolveConfig, out: str | Path, k: int, resume: bool = False,
                   on_step: Callable[[dict], None] | None = None, only: str | None = None,
                   **backend: Any) -> tuple[list[FoldRow], Run]:
    """K out-of-fold discoveries, then the final run; their rows and the final ``Run``. With
    ``only`` (a folder name of ``fold_runs``) that run alone, and no rows: runs spread over
    processes or machines are gathered by a later call with ``resume``."""
    out = Path(out)
    if k < 2:
        raise ValueError(f"--cv needs at least 2 folds, got {k}")
    runs = fold_runs(cfg, k)
    if only is not None and only not in runs:
        raise ValueError(f"--fold {only.removeprefix('fold-')!r}: expected 0 to {k - 1} or 'final'")
    done: dict[str, Run] = {}
    todo = [name for name in runs if only in (None, name)]
    for j, name in enumerate(todo):
        done[name] = evolve(runs[name], out / name, resume=resume and (out / name).exists(),
                            on_step=numbered(on_step, name, j, len(todo)), **backend)
    if only is not None:
        return [], done[only]
    rows = [_fold_row(i, done[f"fold-{i}"]) for i in range(k)]
    atomic_write_text(out / "cv.md", cv_markdown(rows, k, cfg.pick, cfg.objective.jcm, cfg.objective.weights))
    if (out / "final" / "best.yaml").is_file():
        shutil.copyfile(out / "final" / "best.yaml", out / "best.yaml")
    return rows, done["final"]


def _compared(rows: list[FoldRow]) -> list[str]:
    """Everything the picks are compared with on the held-out archs: the baselines, then the alternatives."""
    seen = {n for r in rows for per in r.get("spaces", {}).values() for n in per.get("held", {})}
    return [n for n in dict.fromkeys((*BASELINES, *alternatives.NAMES)) if n in seen]


def _paired_lines(rows: list[FoldRow], variant: str = "mean_tau", weights: Mapping[str, float] | None = None,
                  n_boot: int = N_BOOT, seed: int = 0) -> list[str]:
    """The picks against each baseline and alternative out of fold: a paired bootstrap that resamples
    each held-out fold's archs (per space, and over every space with the objective's ``weights``),
    averaging the folds' JCMs as the table does; then the accuracy of the arch each ranks first in a
    held-out fold (search regret)."""
    spaces = list(dict.fromkeys(sp for r in rows for sp in r.get("spaces", {})))
    groups = [(sp, [sp]) for sp in spaces] + ([("all spaces", spaces)] if len(spaces) > 1 else [])
    lines = []
    for b in _compared(rows):
        for label, sps in groups:
            held = [(sp, h, per) for r in rows for sp in sps
                    if "pick" in (h := (per := r["spaces"].get(sp, {})).get("held", {})) and b in h]
            if not held:
                continue
            parts = [(np.asarray(h["pick"][1]), h[b][0] * np.asarray(h[b][1]),
                      {t: np.asarray(y) for t, y in per["targets"].items()}) for _, h, per in held]
            iv, ivb, d = pooled_pair(parts, n_boot=n_boot, seed=seed, variant=variant,  # type: ignore[arg-type]
                                     space_weights=[(weights or {}).get(sp, 1.0) for sp, _, _ in held])
            lines.append(f"| {label} | {b} | {ivb.estimate:.3f} [{ivb.lo:.3f}, {ivb.hi:.3f}] | {iv.estimate:.3f} "
                         f"[{iv.lo:.3f}, {iv.hi:.3f}] | {d.estimate:+.3f} [{d.lo:.3f}, {d.hi:.3f}] | {d.p:.3f} | "
                         f"{d.verdict} |")
    if not lines:
        return []
    out = ["", f"The picks against each baseline and alternative out of fold (paired bootstrap: {n_boot} resamples "
           "of every held-out fold's archs; JCMs averaged over the folds as above; [95% CI], two-sided p):", "",
           "| space | compared with | its JCM [CI] | picks' JCM [CI] | difference [CI] | p | the picks beat it |",
           "|---|---|---|---|---|---|---|", *lines]
    return out + _chosen_lines(rows) + _regret_lines(rows)


def _chosen_lines(rows: list[FoldRow]) -> list[str]:
    said = [(r["fold"], r["alternatives"]) for r in rows if r.get("alternatives")]
    if not said:
        return []
    names = list(said[0][1])
    return ["", "What the alternatives became on each fold's training and validation archs (`best zoo`: the "
            "hand-designed zoo proxy with the best JCM there; `ranker`, `surrogate`: `eval.alternatives`):", "",
            "| fold | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
            *(f"| {f} | " + " | ".join(a.get(n, "-") for n in names) + " |" for f, a in said)]


def _regret_lines(rows: list[FoldRow]) -> list[str]:
    """Per space and target: mean over held-out folds of the accuracy of the arch each method ranks
    first, and its regret to the fold's best arch (``search --bench-only`` restricted to the fold)."""
    lines = []
    for sp in dict.fromkeys(sp for r in rows for sp in r.get("spaces", {})):
        for name in ("pick", *_compared(rows)):
            tops = [alternatives.top_pick(h[name][0] * np.asarray(h[name][1]),
                                          {t: np.asarray(y) for t, y in per["targets"].items()})
                    for r in rows if name in (h := (per := r["spaces"].get(sp, {})).get("held", {}))]
            if tops:
                lines.append(f"| {sp} | {name} | " + "; ".join(
                    f"{k} {np.mean([t[k] for t in tops]):.2f} (regret {np.mean([t[k + '_regret'] for t in tops]):.2f})"
                    for k in tops[0] if not k.endswith("_regret")) + " |")
    if not lines:
        return []
    return ["", "Searching each held-out fold: the accuracy of the arch each method ranks first, mean over the "
            "folds (regret: the fold's best arch minus it):", "",
            "| space | method | accuracy of its first arch, per target |", "|---|---|---|", *lines]
