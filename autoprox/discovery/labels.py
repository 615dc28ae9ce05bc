"""``autoprox evolve --labels 0,10,20 --draws R``: the label-budget study.

For each benchmark T of the objective, the leave-one-benchmark-out discovery of ``--transfer``
(``OUT/without-<T>/``, checkpointed, shared with a transfer run of the same config) gives its
candidates: its hall of fame and last population, oriented on the sources. Then for each K, R seeded
draws of K labelled archs of T; on each draw every method of ``eval.few_labels`` is fitted on the
same K labels and scored on the same test archs. With ``seed_steps`` (``--seed-steps N``), each draw also
runs N generations seeded from the candidates (``discovery.seeded``, in ``OUT/seeded-<T>/``). Outputs,
written together: ``OUT/labels.json`` (every
draw: labelled archs, choices, each method's JCM and first arch; K = 0's scores), ``OUT/labels.md``
(which method to use at which K, then the tables) and ``OUT/labels.png`` (JCM against K).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from autoprox.core.config import ConfigError
from autoprox.core.io import atomic_write_many
from autoprox.core.progress import Progress
from autoprox.discovery.config import EvolveConfig, run_families
from autoprox.discovery.loop import pick_figure, train_weight
from autoprox.discovery.objective import Objective
from autoprox.discovery.report import input_parts, input_texts, oriented
from autoprox.discovery.run import evolve, numbered
from autoprox.discovery.seeded import DrawObjective, DrawScorer, draw_cost, seeded_pick
from autoprox.discovery.transfer import only_spaces, transfer_runs
from autoprox.eval import alternatives as alt
from autoprox.eval.few_labels import MIN_LABELS, Target, draw_labels, evaluate
from autoprox.eval.label_report import labels_figure, labels_markdown
from autoprox.eval.plots import png_bytes


def parse_budgets(text: str) -> list[int]:
    """``"0,10,20"`` -> [0, 10, 20]: distinct label budgets, 0 or at least ``MIN_LABELS``."""
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--labels {text!r}: expected label counts separated by commas, e.g. 0,10,20") from None
    bad = [k for k in ks if k != 0 and k < MIN_LABELS]
    if not ks or bad:
        raise ConfigError(f"--labels {text!r}: each count must be 0 (zero-shot) or at least {MIN_LABELS}")
    return ks


def _candidates(run: Any) -> list[dict]:
    """The run's hall of fame and last population (distinct, with a validation JCM), the pick first,
    each with the figure the run's pick rule ranks it by (``source_fit``)."""
    pick = run.pick()
    members = ([pick] if pick is not None else []) + list(run.hof) + list(run.population)
    w = train_weight(run.cfg.pick, run.obj.spaces)
    seen, out = set(), []
    for ind in members:
        r = ind.record
        if r["hash"] in seen or r.get("reason") or r.get("val") is None or not math.isfinite(r["val"]):
            continue
        seen.add(r["hash"])
        out.append(r | {"source_fit": pick_figure(r, w)})
    return out


def _target(held: str, run: Any, families: list[str], obj: Objective, variant: str) -> tuple[Target, list[dict]]:
    """Candidates and zoo inputs scored on every arch of ``held`` (a space of the open ``obj``), with
    the sources' parts."""
    cands = _candidates(run)
    named = input_texts(families)
    texts = [oriented(c, "candidate").text for c in cands]
    m = obj.proxy_scores([*texts, *named.values()])[held]
    sd = next(sd for sd in obj.spaces if sd.name == held)
    sources = tuple(input_parts(run.report["inputs"], run.obj.spaces).values())
    pick = [c["hash"] for c in cands].index(run.pick().record["hash"])
    return Target(np.asarray(m[:len(cands)]), np.array([c["source_fit"] for c in cands]), pick,
                  alt.Part(dict(zip(named, m[len(cands):])), sd.targets, sd.archs), sources,
                  variant), cands  # type: ignore[arg-type]


def _seeded(run: Any, target: Target, cands: list[dict], scorer: DrawScorer, ks: Sequence[int], draws: int,
            steps: int, folder: Path) -> tuple[dict, list[dict]]:
    """Every draw's seeded evolution (``discovery.seeded``): the picks by labelled archs, and each run's cost."""
    cfg, n = run.cfg, len(target.part.archs)
    tv = train_weight(cfg.pick, run.obj.spaces)
    jobs = [(k, r, lab) for k in ks if k > 0 for r, lab in enumerate(draw_labels(n, k, draws, cfg.seed))]
    picks, costs = {}, []
    with Progress(f"seeded evolutions ({steps} steps) on {scorer.held}", len(jobs)) as prog:
        for k, r, lab in jobs:
            obj = DrawObjective(scorer, lab, target.part.subset(lab), tv, target.variant)
            where = folder / f"k{k}-draw{r}"
            picks[tuple(int(i) for i in lab)] = seeded_pick(cfg, where, obj, [c["expression"] for c in cands],
                                                            steps, cfg.seed + r)
            costs.append({"k": k, "draw": r, **draw_cost(where)})
            prog.advance()
    return picks, costs


def label_study(cfg: EvolveConfig, out: str | Path, ks: Sequence[int], draws: int, resume: bool = False,
                on_step: Callable[[dict], None] | None = None, seed_steps: int = 0, **backend: Any) -> dict:
    """Every leave-one-out discovery, then every method at every label budget; writes ``labels.json``,
    ``labels.md`` and ``labels.png`` in ``out``. ``seed_steps``: generations of each draw's seeded
    evolution (0: none). ``backend``: ``evolve``'s backend arguments."""
    if draws < 2:
        raise ConfigError(f"--draws must be at least 2 (intervals over draws), got {draws}")
    if not isinstance(seed_steps, int) or isinstance(seed_steps, bool) or seed_steps < 0:
        raise ConfigError(f"--seed-steps must be a whole number >= 0, got {seed_steps!r}")
    out = Path(out)
    families = run_families(cfg)
    runs = transfer_runs(cfg)
    doc: dict = {"ks": list(ks), "draws": draws, "seed": cfg.seed, "jcm": cfg.objective.jcm, "seed_steps": seed_steps,
                 "benchmarks": {}}
    for j, (held, run_cfg) in enumerate(runs.items()):
        folder = out / f"without-{held}"
        run = evolve(run_cfg, folder, resume=resume and folder.exists(),
                     on_step=numbered(on_step, folder.name, j, len(runs)), **backend)
        if run.pick() is None or run.report is None:
            doc["benchmarks"][held] = {"sources": list(run_cfg.objective.spaces), "pick": None}
            continue
        sources = list(run_cfg.objective.spaces) if seed_steps else []
        obj = Objective(only_spaces(cfg.objective, [*sources, held]), families, **backend)
        obj.open()
        try:
            target, cands = _target(held, run, families, obj, cfg.objective.jcm)
            budgets = [k for k in ks if k < len(target.part.archs) - 2]
            costs: list[dict] = []
            if seed_steps:
                scorer = DrawScorer(obj, run.obj, held)  # the source run's objective: its records
                seeded, costs = _seeded(run, target, cands, scorer, budgets, draws, seed_steps, out / f"seeded-{held}")
                target = dataclasses.replace(target, seeded=seeded)
        finally:
            obj.close()
        rows = evaluate(target, budgets, draws, cfg.seed)
        doc["benchmarks"][held] = {
            "sources": list(run_cfg.objective.spaces), "n": len(target.part.archs),
            "targets": list(target.part.targets), "pick": cands[0]["expression"],
            "candidates": [{"expression": c["expression"], "sign": c["sign"], "source_fit": c["source_fit"]}
                           for c in cands],
            "seeded_runs": costs, "rows": rows}
    plain = {**doc, "benchmarks": {t: {**b, "rows": [{k: v for k, v in r.items() if k != "_boot"}
                                                     for r in b.get("rows", [])]}
                                   for t, b in doc["benchmarks"].items()}}
    atomic_write_many({out / "labels.json": json.dumps(plain).encode(),
                       out / "labels.md": labels_markdown(doc).encode(),
                       out / "labels.png": png_bytes(labels_figure(doc))})
    return doc
