"""The state of an evolution run (``Run``): DEAP evolution of proxy graphs with elitism and checkpoints.

Two modes, both scoring through ``objective.Objective`` (train-fold JCM as fitness):

- ``paper``: Auto-Prox Algorithm 1. Each iteration samples a pool (ratio ``pool_ratio``)
  of the population, takes its ``top_k``, picks a random parent and mutates it until a
  child beats the parent's JCM by ``margin`` (at most ``max_tries`` batches of
  ``mutants`` children, scored together); the child joins and the worst member leaves.
- ``generational``: (mu + lambda). ``offspring`` children per generation by crossover
  (``cxpb``) or mutation, scored in one pass; the best ``population`` survive.

Every step ends with an atomic checkpoint (population, hall of fame, RNG state, history
length), so ``--resume`` after a kill continues exactly where the last step ended and a
resumed run ends where an unbroken one with the same seed does. The final pick is the
hall-of-fame member chosen by ``pick``: the best *validation* JCM (``val``), or the best JCM
over the train and validation archs together (``train_val``). Neither reads a test fold.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from deap import base, creator, tools

from autoprox.core.checkpoint import load_state, rng_from_json, rng_to_json, save_state
from autoprox.core.config import ConfigError, to_dict
from autoprox.core.io import atomic_write_text
from autoprox.eval.fitness import INVALID
from autoprox.discovery.config import EvolveConfig, config_changes, seed_genomes
from autoprox.discovery.objective import Objective
from autoprox.discovery.variation import crossover, mutate, random_genome, size, to_proxy

def make_types() -> tuple[type, type]:
    """DEAP's ``FitnessMax`` and ``Individual`` (a genome list); idempotent, for driver and workers."""
    if not hasattr(creator, "ApxFitness"):
        creator.create("ApxFitness", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "ApxIndividual"):
        creator.create("ApxIndividual", list, fitness=creator.ApxFitness, record=None)
    return creator.ApxFitness, creator.ApxIndividual


class RecordMemo:
    """Every scored proxy's record by hash, kept as its ``history.jsonl`` line and parsed when asked
    for: a parsed record costs ~4 KB, its line about 1 KB, and an overnight run scores tens of thousands."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}
        self.invalid = 0  # records with a reason (not scorable)

    def add(self, line: str) -> None:
        r = json.loads(line)
        if r["hash"] not in self._lines:
            self.invalid += bool(r.get("reason"))
        self._lines[r["hash"]] = line

    def __contains__(self, h: object) -> bool:
        return h in self._lines

    def __getitem__(self, h: str) -> dict:
        return json.loads(self._lines[h])  # exactly what a resumed run reads back

    def __len__(self) -> int:
        return len(self._lines)

    def values(self) -> Iterator[dict]:
        return (json.loads(line) for line in self._lines.values())


class Run:
    """The state of one evolution run in ``out``; ``step()`` advances it by one generation/iteration."""

    def __init__(self, cfg: EvolveConfig, out: Path, objective: Objective) -> None:
        self.cfg, self.out, self.obj = cfg, Path(out), objective
        _, self.Individual = make_types()
        self.memo = RecordMemo()
        self.population: list = []
        self.hof = tools.HallOfFame(cfg.hall_of_fame, similar=lambda a, b: _identity(a) == _identity(b))
        self.rng = random.Random(cfg.seed)
        self.step_no = 0
        self.evals = 0
        self.rejected = 0   # candidates redrawn because they failed the probe
        self.elapsed = 0.0
        self.history_path = self.out / "history.jsonl"
        self.progress_rows: list[dict] = []
        self.report: dict | None = None  # plain records of the finished run (``report.run_doc``)
        self.wrote = False  # whether this call wrote the run's outputs (not when they were current)

    # ------------------------------------------------------------ scoring
    def evaluate(self, genomes: list[list[str]]) -> list:
        """Individuals for ``genomes``; each distinct proxy is scored once per run."""
        parsed = [to_proxy(g, self.cfg.variation) for g in genomes]
        exprs, hashes = [p.text for p in parsed], [p.hash for p in parsed]
        todo = sorted({h: e for h, e in zip(hashes, exprs) if h not in self.memo}.items())
        if todo:
            t0 = time.perf_counter()
            recs = self.obj.evaluate([e for _, e in todo])
            dt = time.perf_counter() - t0
            lines = []
            for (h, e), r in zip(todo, recs):
                line = json.dumps({"hash": h, "expression": e, "step": self.step_no, **r}, sort_keys=True)
                self.memo.add(line)
                lines.append(line)
            self.evals += len(todo)
            self.elapsed += dt
            with open(self.history_path, "a") as f:
                f.write("\n".join(lines) + "\n")
        return [self._individual(g, h) for g, h in zip(genomes, hashes)]

    def screened(self, genomes: list[list[str]], redraw: Callable[[], list[str]]) -> list[list[str]]:
        """``genomes`` with each new one that fails the probe (non-finite or constant on a few
        archs) redrawn, for up to ``repair`` rounds; what still fails is evaluated (and counted
        invalid). Already scored proxies are not probed again."""
        var = self.cfg.variation
        out = list(genomes)
        for _ in range(self.cfg.repair):
            new = [i for i, g in enumerate(out) if to_proxy(g, var).hash not in self.memo]
            reasons = self.obj.probe([to_proxy(out[i], var).text for i in new], self.cfg.probe_archs)
            bad = [i for i, r in zip(new, reasons) if r is not None]
            if not bad:
                break
            self.rejected += len(bad)
            for i in bad:
                out[i] = redraw()
        return out

    def _individual(self, genome: list[str], h: str) -> Any:
        """An individual for ``genome`` carrying its scored record (by proxy hash ``h``)."""
        ind = self.Individual(genome)
        ind.record = self.memo[h]
        fit = ind.record.get("fitness", ind.record["train"])
        if self.cfg.variation.parsimony and fit > INVALID:
            nodes = sum(size(q.expr) for q in to_proxy(genome, self.cfg.variation).parts)
            fit -= self.cfg.variation.parsimony * (nodes - 1)
        ind.fitness.values = (fit,)
        return ind

    # ------------------------------------------------------------ the loop
    def initialise(self) -> None:
        var = self.cfg.variation
        genomes = seed_genomes(self.cfg)
        seen = {to_proxy(g, var).hash for g in genomes}
        tries = 0
        while len(genomes) < self.cfg.population and tries < 100 * self.cfg.population:
            g = random_genome(self.rng, var)
            tries += 1
            h = to_proxy(g, var).hash
            if h not in seen:
                seen.add(h)
                genomes.append(g)
        n_seeds = len(self.cfg.seed_proxies)
        drawn = self.screened(genomes[n_seeds: self.cfg.population], lambda: random_genome(self.rng, var))
        self.population = self.evaluate(genomes[:n_seeds] + drawn)
        self.hof.update(self.population)

    def step(self) -> None:
        if self.cfg.mode == "paper":
            self._paper_iteration()
        else:
            self._generation()
        self.step_no += 1

    def _generation(self) -> None:
        c, var, rng = self.cfg, self.cfg.variation, self.rng
        def child() -> list[str]:
            if rng.random() < c.cxpb:
                a, b = rng.sample(self.population, 2)
                return crossover(a, b, rng, var)[0]
            return mutate(rng.choice(self.population), rng, var)
        kids = self.evaluate(self.screened([child() for _ in range(c.offspring)], child))
        self.hof.update(kids)
        self.population = _best_unique(self.population + kids, c.population)

    def _paper_iteration(self) -> None:
        c, var, rng = self.cfg, self.cfg.variation, self.rng
        pool = rng.sample(self.population, max(1, round(c.pool_ratio * len(self.population))))
        parent = rng.choice(tools.selBest(pool, min(c.top_k, len(pool))))
        bar = parent.fitness.values[0] + c.margin
        for _ in range(c.max_tries):
            kids = self.evaluate(self.screened([mutate(parent, rng, var) for _ in range(c.mutants)],
                                               lambda: mutate(parent, rng, var)))
            self.hof.update(kids)
            winner = next((k for k in kids if k.fitness.values[0] > bar), None)
            if winner is not None:
                self.population.append(winner)
                self.population.remove(tools.selWorst(self.population, 1)[0])
                return

    # ------------------------------------------------------------ checkpoint
    def checkpoint(self) -> None:
        state = {"config": to_dict(self.cfg), "step": self.step_no, "evals": self.evals, "rejected": self.rejected,
                 "elapsed": self.elapsed, "rng": rng_to_json(self.rng),
                 "population": [list(i) for i in self.population], "hall_of_fame": [list(i) for i in self.hof],
                 "history_lines": len(self.memo), "progress": self.progress_rows}
        save_state(self.out / "checkpoint.json", state)

    def restore(self) -> bool:
        """Load the last checkpoint (False when there is none: start fresh); history lines
        written after it are dropped (re-scored alike)."""
        state = load_state(self.out / "checkpoint.json")
        if state is None:
            return False
        if diff := config_changes(state["config"], self.cfg):
            raise ConfigError(f"{self.out}: the config differs from the checkpointed run's: {'; '.join(diff)}")
        lines = self.history_path.read_text(encoding="utf-8").splitlines() if self.history_path.is_file() else []
        keep = lines[: state["history_lines"]]
        if len(keep) != state["history_lines"]:
            raise ConfigError(f"{self.history_path} has {len(lines)} lines, the checkpoint needs "
                              f"{state['history_lines']}: the run folder was altered")
        atomic_write_text(self.history_path, "".join(ln + "\n" for ln in keep))
        for ln in keep:
            self.memo.add(ln)
        self.step_no, self.evals, self.elapsed = state["step"], state["evals"], state["elapsed"]
        self.rejected = state.get("rejected", 0)
        self.rng = rng_from_json(state["rng"])
        self.progress_rows = state["progress"]
        self.population = self._individuals(state["population"])
        self.hof.clear()
        for ind in reversed(self._individuals(state["hall_of_fame"])):  # worst first: ties keep the saved order
            self.hof.insert(ind)
        return True

    def _individuals(self, genomes: list) -> list:
        return [self._individual(g, to_proxy(g, self.cfg.variation).hash) for g in genomes]

    # ------------------------------------------------------------ summaries
    def summary(self) -> dict:
        """Progress figures after the current step."""
        fits = [i.fitness.values[0] for i in self.population]
        valid = [i.record["train"] for i in self.population if i.fitness.values[0] > INVALID]
        best = self.pick()
        invalid = self.memo.invalid
        return {"step": self.step_no, "evals": self.evals, "unique": len(self.memo), "invalid": invalid,
                "invalid_pct": 100.0 * invalid / max(len(self.memo), 1), "rejected": self.rejected,
                "best_train": max(valid, default=INVALID), "mean_train": sum(valid) / len(valid) if valid else INVALID,
                "best_fitness": max(fits),  # train JCM plus the beyond-size reward, when the objective has one
                "pick_val": best.record["val"] if best is not None else None,
                "evals_per_s": self.evals / self.elapsed if self.elapsed else 0.0}

    def pick(self) -> Any:
        """The hall-of-fame member with the best validation JCM, train JCM breaking ties (``pick: val``),
        or the best mean of train and validation JCM weighted by their arch counts (``train_val``)."""
        members = list(self.hof)
        i = pick_index([m.record for m in members], self.cfg.pick, self.obj.spaces)
        return None if i is None else members[i]


def pick_index(records: list[dict], rule: str, spaces: list) -> int | None:
    """The position in ``records`` (hall-of-fame records) of the pick under ``rule`` (``PICKS``), the
    folds' sizes read off ``spaces``; None when no record has a validation JCM."""
    w = train_weight(rule, spaces)
    ok = [i for i, r in enumerate(records) if r.get("val") is not None]
    key = (lambda i: (pick_figure(records[i], w), records[i]["train"]))
    return max(ok, key=key) if ok else None


def train_weight(rule: str, spaces: list) -> float:
    """The weight of the train JCM beside the validation JCM under pick ``rule``: the train archs'
    share of both folds for ``train_val``, 0 for ``val``."""
    n_tr, n_val = (sum(len(sd.folds[f]) for sd in spaces) for f in ("train", "val"))
    return n_tr / (n_tr + n_val) if rule == "train_val" else 0.0


def pick_figure(record: dict, w: float) -> float:
    """The figure a pick rule ranks a record by: its train and validation JCMs, the train weighted ``w``
    (``train_weight``)."""
    return float(w * record["train"] + (1 - w) * record["val"])


def _identity(ind: Any) -> str:
    """What makes two individuals the same proxy for selection: the order they rank the archs
    in (monotone variants of one proxy coincide), else the graph hash."""
    return ind.record.get("ranking") or ind.record["hash"]


def _best_unique(inds: list, n: int) -> list:
    """The ``n`` best individuals, one per arch ranking (stable order)."""
    seen, out = set(), []
    for i in sorted(inds, key=lambda i: i.fitness.values[0], reverse=True):
        if _identity(i) not in seen:
            seen.add(_identity(i))
            out.append(i)
    return out[:n]
