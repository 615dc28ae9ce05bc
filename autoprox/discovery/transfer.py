"""``autoprox evolve --transfer``: leave-one-benchmark-out discovery, the test of a generic proxy.

For each space (benchmark) of the objective, one discovery on all the others (``OUT/without-<space>/``,
no test fold, picked by the run's rule) whose pick then scores every arch of the space left out,
zero-shot. Beside it, on the same archs, the alternatives (``eval.alternatives``) chosen and fitted
on the source benchmarks' archs only: the best hand-designed zoo proxy there, the ranker, the
surrogate where the archs' fields allow, and the arch formulas. ``OUT/transfer.md``: the transfer
matrix (sources -> held-out benchmark), each figure with its interval, the paired difference to the
pick, p and verdict, and the accuracy of the arch each method ranks first; ``OUT/transfer.json``:
the scores behind it. Every run checkpoints; ``--resume`` continues the sequence.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, TypedDict

import numpy as np

from autoprox.core.config import ConfigError
from autoprox.core.io import atomic_write_many
from autoprox.eval import alternatives
from autoprox.eval.uncertainty import N_BOOT, jcm_ci, pooled_pair
from autoprox.discovery.config import EvolveConfig, run_families
from autoprox.discovery.objective import Objective
from autoprox.discovery.report import input_parts, input_texts, oriented
from autoprox.discovery.run import evolve, numbered


class TransferRow(TypedDict, total=False):
    """One held-out benchmark of ``transfer.md`` / ``transfer.json`` (plain data)."""

    held_out: str
    sources: list[str]
    pick: str | None                        # the source run's pick (None: it could not pick)
    sign: int
    chosen: dict[str, str]                  # what each learned alternative became on the sources
    scores: dict[str, list[float]]          # method -> its scores on every held-out arch (higher: better)
    targets: dict[str, list[float]]


def transfer_runs(cfg: EvolveConfig) -> dict[str, EvolveConfig]:
    """The source runs by held-out space: the objective without that space and without a test fold."""
    obj = cfg.objective
    if len(obj.spaces) < 2:
        raise ConfigError(f"--transfer needs an objective with at least 2 spaces, got {list(obj.spaces)}")
    return {held: dataclasses.replace(cfg, objective=only_spaces(obj, [s for s in obj.spaces if s != held]))
            for held in obj.spaces}


def only_spaces(obj: Any, spaces: list[str]) -> Any:
    """The objective config ``obj`` over ``spaces`` alone, every arch of them scored (no test or CV split)."""
    keep = (lambda d: {k: v for k, v in d.items() if k in spaces})
    return dataclasses.replace(obj, spaces=tuple(spaces), bench=keep(obj.bench), space_targets=keep(obj.space_targets),
                               weights=keep(obj.weights), subset=keep(obj.subset), test_fraction=0.0, cv_folds=0,
                               cv_fold=0)


def _held_part(cfg: EvolveConfig, held: str, pick_text: str, families: list[str],
               **backend: Any) -> tuple[np.ndarray, alternatives.Part]:
    """The oriented pick's scores and every alternative input's (zoo proxies, arch scalars) on every
    arch of the held-out space."""
    named = input_texts(families)
    obj = Objective(only_spaces(cfg.objective, [held]), families, **backend)
    obj.open()
    try:
        m = obj.proxy_scores([pick_text, *named.values()])[held]
    finally:
        obj.close()
    sd = obj.spaces[0]
    return m[0], alternatives.Part(dict(zip(named, m[1:])), sd.targets, sd.archs)


def transfer(cfg: EvolveConfig, out: str | Path, resume: bool = False,
             on_step: Callable[[dict], None] | None = None, **backend: Any) -> list[TransferRow]:
    """Every leave-one-space-out discovery and its zero-shot figures; writes ``transfer.md`` and
    ``transfer.json`` in ``out``. ``backend``: ``evolve``'s backend arguments."""
    out = Path(out)
    rows = []
    families = run_families(cfg)
    sources = transfer_runs(cfg)
    for j, (held, run_cfg) in enumerate(sources.items()):
        folder = out / f"without-{held}"
        run = evolve(run_cfg, folder, resume=resume and folder.exists(),
                     on_step=numbered(on_step, folder.name, j, len(sources)), **backend)
        pick = run.pick()
        row: TransferRow = {"held_out": held, "sources": list(run_cfg.objective.spaces), "pick": None}
        if pick is not None and run.report is not None:
            inputs = run.report["inputs"]
            train = list(input_parts(inputs, run.obj.spaces).values())
            fitted = alternatives.fit(train, cfg.objective.jcm)
            scores, part = _held_part(cfg, held, oriented(pick.record, "pick").text, families, **backend)
            row |= {"pick": pick.record["expression"], "sign": pick.record["sign"], "chosen": fitted.describe(),
                    "scores": {"pick": scores.tolist()} | {n: v.tolist() for n, v in fitted.score(part).items()},
                    "targets": {t: y.tolist() for t, y in part.targets.items()}}
        rows.append(row)
    atomic_write_many({out / "transfer.md": transfer_markdown(rows, cfg.objective.jcm).encode(),
                       out / "transfer.json": json.dumps(rows).encode()})
    return rows


def transfer_markdown(rows: list[TransferRow], variant: str = "mean_tau", n_boot: int = N_BOOT, seed: int = 0) -> str:
    """The transfer matrix, then per held-out benchmark each method against the pick."""
    fmt = (lambda iv: "-" if iv is None or iv.lo != iv.lo else f"{iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]")
    methods = ["pick", *(n for n in alternatives.NAMES if any(n in r.get("scores", {}) for r in rows))]
    lines = [f"Zero-shot transfer: each pick discovered on the other benchmarks, then JCM ({variant}) on every arch "
             "of the one held out [95% CI, archs resampled]; the alternatives chosen and fitted on the same source "
             "benchmarks.", "",
             "| held out | sources | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    detail: list[str] = []
    for r in rows:
        ys = {t: np.asarray(y) for t, y in r.get("targets", {}).items()}
        s = {n: np.asarray(v) for n, v in r.get("scores", {}).items()}
        figs = {n: jcm_ci(s[n], ys, n_boot, seed, variant=variant, sign=1) if n in s else None  # type: ignore[arg-type]
                for n in methods}
        lines.append(f"| {r['held_out']} | {'+'.join(r['sources'])} | " + " | ".join(fmt(figs[n]) for n in methods)
                     + " |")
        if r["pick"] is None:
            continue
        detail += ["", f"**{r['held_out']}** (from {'+'.join(r['sources'])}): pick `{r['pick']}`"
                   + (" (negated)" if r["sign"] < 0 else "") + "; " + "; ".join(
                       f"{k}: {v}" for k, v in r["chosen"].items()) + ".", "",
                   "| method | JCM [95% CI] | pick - it [CI] | p | the pick beats it | its first arch |",
                   "|---|---|---|---|---|---|"]
        for n in methods:
            if n not in s:
                continue
            _, iv, d = pooled_pair([(s["pick"], s[n], ys)], n_boot=n_boot, seed=seed, variant=variant)  # type: ignore[arg-type]
            top = alternatives.top_pick(s[n], ys)
            first = "; ".join(f"{t} {top[t]:.2f} (regret {top[t + '_regret']:.2f})" for t in ys)
            if n == "pick":
                detail.append(f"| pick | {iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}] | | | | {first} |")
            else:
                detail.append(f"| {n} | {iv.estimate:.3f} [{iv.lo:.3f}, {iv.hi:.3f}] | {d.estimate:+.3f} "
                              f"[{d.lo:.3f}, {d.hi:.3f}] | {d.p:.3f} | {d.verdict} | {first} |")
    return "\n".join(lines + detail) + "\n"
