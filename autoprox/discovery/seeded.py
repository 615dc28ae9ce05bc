"""A few generations of evolution on each label draw, seeded from a zero-shot discovery's candidates.

On a draw of K labelled archs of the benchmark held out, the rule discovery re-selects by
(``few_labels.reselection``: source JCM and JCM on the K labels, weighed by K) becomes the fitness of a
short (mu + lambda) evolution whose first population is the candidates that rule ranks first. Every
child is scored once per held-out benchmark, on the sources (the record the zero-shot run's objective
makes) and on every arch of the benchmark held out: scores do not depend on the draw, so every draw
shares them (``DrawScorer``); only the fitness reads the draw's K labels. The draw's seeded pick is the
member of the final hall of fame and population with the best fitness. Each draw's run checkpoints in
its own folder, so a killed study resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from autoprox.discovery.config import EvolveConfig
from autoprox.discovery.loop import Run, pick_figure
from autoprox.discovery.objective import Objective, SpaceData
from autoprox.eval import alternatives as alt
from autoprox.eval.few_labels import jcm_on, reselection
from autoprox.eval.fitness import INVALID


@dataclasses.dataclass(frozen=True)
class Scored:
    record: dict            # the proxy's record on the sources (``objective.ProxyRecord``)
    held: np.ndarray        # its raw scores on every arch of the held-out benchmark


class DrawScorer:
    """Scores proxy texts once: their records on the sources and their scores on the held-out
    benchmark. ``both`` is an open objective over the sources and the held-out benchmark; ``sources``,
    the zero-shot run's own objective (``Objective.record`` needs no open backend), makes the records."""

    def __init__(self, both: Objective, sources: Objective, held: str) -> None:
        self.both, self.sources, self.held = both, sources, held
        self._memo: dict[str, Scored] = {}

    def get(self, texts: Sequence[str]) -> list[Scored]:
        todo = sorted({t for t in texts if t not in self._memo})
        if todo:
            m = self.both.proxy_scores(todo)
            for i, t in enumerate(todo):
                rec = self.sources.record({sd.name: m[sd.name][i] for sd in self.sources.spaces})
                self._memo[t] = Scored(dict(rec), np.asarray(m[self.held][i], dtype=np.float64))
        return [self._memo[t] for t in texts]


class DrawObjective:
    """What a seeded run scores with (the parts of ``Objective`` that ``loop.Run`` reads): each proxy's
    sources record with ``fitness`` set to the draw's re-selection rule."""

    def __init__(self, scorer: DrawScorer, lab: np.ndarray, known: alt.Part, tv_weight: float,
                 variant: str) -> None:
        self.scorer, self.lab, self.known = scorer, lab, known
        self.tv_weight, self.variant = tv_weight, variant

    @property
    def spaces(self) -> list[SpaceData]:
        return self.scorer.sources.spaces

    def probe(self, texts: Sequence[str], first: int = 3) -> list[str | None]:
        return self.scorer.both.probe(texts, first)

    def evaluate(self, texts: Sequence[str]) -> list[dict]:
        out = []
        for s in self.scorer.get(texts):
            r = dict(s.record)
            if not r.get("reason"):
                if r.get("val") is None:  # no source figure to weigh: last, as an invalid proxy is
                    r["fitness"] = INVALID
                else:
                    source = pick_figure(r, self.tv_weight)
                    label = jcm_on(r["sign"] * s.held[self.lab], self.known, self.variant)  # type: ignore[arg-type]
                    r |= {"source_fit": source, "label_fit": label,
                          "fitness": float(reselection(source, label, len(self.lab)))}
            out.append(r)
        return out


def seeded_pick(cfg: EvolveConfig, folder: Path, obj: DrawObjective, candidates: Sequence[str],
                steps: int, seed: int) -> tuple[np.ndarray, str]:
    """Runs (or resumes) the seeded evolution of one draw in ``folder``: ``cfg``'s variation and sizes,
    its first population the ``cfg.population`` candidates the draw's rule ranks first. Returns the
    pick's oriented scores on every held-out arch and its expression."""
    recs = obj.evaluate(list(candidates))
    order = sorted(range(len(recs)), key=lambda i: -recs[i].get("fitness", INVALID))
    seeds = tuple(candidates[i] for i in order[:cfg.population])
    short = dataclasses.replace(cfg, seed=seed, steps=steps, seed_proxies=seeds)
    run = Run(short, folder, obj)  # type: ignore[arg-type]  (``DrawObjective`` has what ``Run`` reads)
    folder.mkdir(parents=True, exist_ok=True)
    if not run.restore():
        run.history_path.unlink(missing_ok=True)
        run.initialise()
        run.checkpoint()
    while run.step_no < steps:
        run.step()
        run.checkpoint()
    best = max([*run.hof, *run.population], key=lambda i: i.record.get("fitness", INVALID))
    text = best.record["expression"]
    return best.record["sign"] * obj.scorer.get([text])[0].held, text


def draw_cost(folder: Path) -> dict:
    """A seeded run's steps, proxies scored and seconds spent scoring them (read off its checkpoint)."""
    state = json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))
    return {"steps": state["step"], "evals": state["evals"], "seconds": state["elapsed"]}
