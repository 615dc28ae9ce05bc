"""``autoprox evolve``: DEAP evolution of proxy graphs with elitism, checkpoints and resume.

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
hall-of-fame member with the best *validation* JCM.
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deap import base, creator, tools

from .config import ConfigError, load_config, save_config, to_dict
from .fitness import INVALID
from .graph import proxy_hash
from .io import atomic_write_text
from .objective import Objective, ObjectiveConfig, families_of
from .variation import VariationConfig, crossover, mutate, random_genome, to_expr, validate

MODES = ("paper", "generational")


@dataclass(frozen=True)
class EvolveConfig:
    """One evolution run (``runs/<name>.yaml``)."""

    mode: str = "generational"
    seed: int = 0
    population: int = 40
    steps: int = 20                 # generations (generational) or iterations (paper)
    offspring: int = 40             # generational: children per generation
    cxpb: float = 0.4               # generational: probability a child comes from crossover
    pool_ratio: float = 0.25        # paper: sampled fraction of the population
    top_k: int = 5                  # paper: parents drawn from the pool's top k
    margin: float = 0.0             # paper: elitism margin a child must clear
    mutants: int = 8                # paper: children scored together per try
    max_tries: int = 4              # paper: tries before the iteration gives up
    hall_of_fame: int = 20
    seed_proxies: tuple[str, ...] = ()  # genomes (expressions / genotype genes) to start from
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    variation: VariationConfig = field(default_factory=VariationConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.population < 2 or self.steps < 0 or self.offspring < 1 or self.hall_of_fame < 1:
            raise ValueError("need population >= 2, steps >= 0, offspring >= 1, hall_of_fame >= 1")
        if not 0 < self.pool_ratio <= 1 or self.top_k < 1 or self.mutants < 1 or self.max_tries < 1:
            raise ValueError("need 0 < pool_ratio <= 1, top_k >= 1, mutants >= 1, max_tries >= 1")


def make_types() -> tuple[type, type]:
    """DEAP's ``FitnessMax`` and ``Individual`` (a genome list); idempotent, for driver and workers."""
    if not hasattr(creator, "ApxFitness"):
        creator.create("ApxFitness", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "ApxIndividual"):
        creator.create("ApxIndividual", list, fitness=creator.ApxFitness, record=None)
    return creator.ApxFitness, creator.ApxIndividual


def _rng_to_json(rng: random.Random) -> list:
    v, state, gauss = rng.getstate()
    return [v, list(state), gauss]


def _rng_from_json(s: list) -> random.Random:
    rng = random.Random()
    rng.setstate((s[0], tuple(s[1]), s[2]))
    return rng


class Run:
    """The state of one evolution run in ``out``; ``step()`` advances it by one generation/iteration."""

    def __init__(self, cfg: EvolveConfig, out: Path, objective: Objective) -> None:
        self.cfg, self.out, self.obj = cfg, Path(out), objective
        _, self.Individual = make_types()
        self.memo: dict[str, dict] = {}
        self.population: list = []
        self.hof = tools.HallOfFame(cfg.hall_of_fame, similar=lambda a, b: _identity(a) == _identity(b))
        self.rng = random.Random(cfg.seed)
        self.step_no = 0
        self.evals = 0
        self.elapsed = 0.0
        self.history_path = self.out / "history.jsonl"
        self.progress_rows: list[dict] = []

    # ------------------------------------------------------------ scoring
    def evaluate(self, genomes: list[list[str]]) -> list:
        """Individuals for ``genomes``; each distinct proxy is scored once per run."""
        parsed = [to_expr(g, self.cfg.variation) for g in genomes]
        exprs, hashes = [str(e) for e in parsed], [proxy_hash(e) for e in parsed]
        todo = sorted({h: e for h, e in zip(hashes, exprs) if h not in self.memo}.items())
        if todo:
            t0 = time.perf_counter()
            recs = self.obj.evaluate([e for _, e in todo])
            dt = time.perf_counter() - t0
            lines = []
            for (h, e), r in zip(todo, recs):
                line = json.dumps({"hash": h, "expression": e, "step": self.step_no, **r}, sort_keys=True)
                self.memo[h] = json.loads(line)  # exactly what a resumed run reads back
                lines.append(line)
            self.evals += len(todo)
            self.elapsed += dt
            with open(self.history_path, "a") as f:
                f.write("\n".join(lines) + "\n")
        return [self._individual(g, h) for g, h in zip(genomes, hashes)]

    def _individual(self, genome: list[str], h: str) -> Any:
        """An individual for ``genome`` carrying its scored record (by proxy hash ``h``)."""
        ind = self.Individual(genome)
        ind.record = self.memo[h]
        ind.fitness.values = (ind.record["train"],)
        return ind

    # ------------------------------------------------------------ the loop
    def initialise(self) -> None:
        var = self.cfg.variation
        genomes = [validate(_genome(s, var), var) for s in self.cfg.seed_proxies]
        seen = {proxy_hash(to_expr(g, var)) for g in genomes}
        tries = 0
        while len(genomes) < self.cfg.population and tries < 100 * self.cfg.population:
            g = random_genome(self.rng, var)
            tries += 1
            h = proxy_hash(to_expr(g, var))
            if h not in seen:
                seen.add(h)
                genomes.append(g)
        self.population = self.evaluate(genomes[: self.cfg.population])
        self.hof.update(self.population)

    def step(self) -> None:
        if self.cfg.mode == "paper":
            self._paper_iteration()
        else:
            self._generation()
        self.step_no += 1

    def _generation(self) -> None:
        c, var, rng = self.cfg, self.cfg.variation, self.rng
        children = []
        while len(children) < c.offspring:
            if rng.random() < c.cxpb:
                a, b = rng.sample(self.population, 2)
                children.append(crossover(a, b, rng, var)[0])
            else:
                children.append(mutate(rng.choice(self.population), rng, var))
        kids = self.evaluate(children)
        self.hof.update(kids)
        self.population = _best_unique(self.population + kids, c.population)

    def _paper_iteration(self) -> None:
        c, var, rng = self.cfg, self.cfg.variation, self.rng
        pool = rng.sample(self.population, max(1, round(c.pool_ratio * len(self.population))))
        parent = rng.choice(tools.selBest(pool, min(c.top_k, len(pool))))
        bar = parent.fitness.values[0] + c.margin
        for _ in range(c.max_tries):
            kids = self.evaluate([mutate(parent, rng, var) for _ in range(c.mutants)])
            self.hof.update(kids)
            winner = next((k for k in kids if k.fitness.values[0] > bar), None)
            if winner is not None:
                self.population.append(winner)
                self.population.remove(tools.selWorst(self.population, 1)[0])
                return

    # ------------------------------------------------------------ checkpoint
    def checkpoint(self) -> None:
        state = {"config": to_dict(self.cfg), "step": self.step_no, "evals": self.evals,
                 "elapsed": self.elapsed, "rng": _rng_to_json(self.rng),
                 "population": [list(i) for i in self.population], "hall_of_fame": [list(i) for i in self.hof],
                 "history_lines": len(self.memo), "progress": self.progress_rows}
        atomic_write_text(self.out / "checkpoint.json", json.dumps(state))

    def restore(self) -> None:
        """Load the last checkpoint; history lines written after it are dropped (re-scored alike)."""
        p = self.out / "checkpoint.json"
        if not p.is_file():
            raise FileNotFoundError(f"nothing to resume: {p} not found")
        state = json.loads(p.read_text())
        if state["config"] != to_dict(self.cfg):
            raise ConfigError(f"{self.out}: the config differs from the checkpointed run's; "
                              f"resume with the same config (see {self.out / 'config.yaml'})")
        lines = self.history_path.read_text().splitlines() if self.history_path.is_file() else []
        keep = lines[: state["history_lines"]]
        if len(keep) != state["history_lines"]:
            raise ConfigError(f"{self.history_path} has {len(lines)} lines, the checkpoint needs "
                              f"{state['history_lines']}: the run folder was altered")
        atomic_write_text(self.history_path, "".join(ln + "\n" for ln in keep))
        for ln in keep:
            r = json.loads(ln)
            self.memo[r["hash"]] = r
        self.step_no, self.evals, self.elapsed = state["step"], state["evals"], state["elapsed"]
        self.rng = _rng_from_json(state["rng"])
        self.progress_rows = state["progress"]
        self.population = self._individuals(state["population"])
        self.hof.clear()
        self.hof.items = self._individuals(state["hall_of_fame"])  # as saved: ties keep their order
        self.hof.keys = [i.fitness for i in reversed(self.hof.items)]

    def _individuals(self, genomes: list) -> list:
        return [self._individual(g, proxy_hash(to_expr(g, self.cfg.variation))) for g in genomes]

    # ------------------------------------------------------------ summaries
    def summary(self) -> dict:
        """Progress figures after the current step."""
        fits = [i.fitness.values[0] for i in self.population]
        valid = [f for f in fits if f > INVALID]
        best = self.pick()
        return {"step": self.step_no, "evals": self.evals, "unique": len(self.memo),
                "best_train": max(fits), "mean_train": sum(valid) / len(valid) if valid else INVALID,
                "pick_val": best.record["val"] if best is not None else None,
                "evals_per_s": self.evals / self.elapsed if self.elapsed else 0.0}

    def pick(self) -> Any:
        """The hall-of-fame member with the best validation JCM (train JCM breaks ties)."""
        members = [i for i in self.hof if i.record["val"] is not None]
        if not members:
            return None
        return max(members, key=lambda i: (i.record["val"], i.record["train"]))


def _genome(spec: str, var: VariationConfig) -> list[str]:
    """A seed proxy (zoo name, expression or genotype string) as a genome of ``var.structure``."""
    from .genotype import parse_genotype, to_genotype
    from .graph import parse
    from .zoo import get_proxy, list_proxies
    if spec in list_proxies():
        expr = get_proxy(spec).expr  # type: ignore[attr-defined]
    else:
        expr = parse_genotype(spec) if spec.lstrip().startswith("INPUT:") else parse(spec)
    if var.structure == "free":
        return [str(expr)]
    text = to_genotype(expr)
    if text is None:
        raise ConfigError(f"seed proxy {spec!r} does not have the Auto-Prox tree shape")
    m = re.match(r"INPUT:\(([^)]*)\)TREE:\(([^)]*)\)BINARY:\(([^)]*)\)", text)
    assert m is not None
    return [*(x.strip() for x in m[1].split(",")), *m[2].split("|"), m[3]]


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


def load_evolve_config(path: str | Path) -> EvolveConfig:
    return load_config(EvolveConfig, path)


def evolve(cfg: EvolveConfig, out: str | Path, resume: bool = False, backend: str = "serial",
           workers: int = 2, address: str | None = None,
           on_step: Callable[[dict], None] | None = None) -> Run:
    """Run (or resume) an evolution in ``out``; returns the finished ``Run``."""
    out = Path(out)
    if not resume and (out / "checkpoint.json").exists():
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    var = cfg.variation
    obj = Objective(cfg.objective, families_of(var.leaves + var.single_leaves), backend, workers, address)
    run = Run(cfg, out, obj)
    if resume:
        run.restore()
    else:
        out.mkdir(parents=True, exist_ok=True)
        run.history_path.unlink(missing_ok=True)
    save_config(cfg, out / "config.yaml")
    obj.open()
    try:
        if not resume:
            run.initialise()
            run.progress_rows.append(run.summary())
            run.checkpoint()
            if on_step:
                on_step(run.progress_rows[-1])
        while run.step_no < cfg.steps:
            run.step()
            run.progress_rows.append(run.summary())
            run.checkpoint()
            if on_step:
                on_step(run.progress_rows[-1])
        from .evolve_report import write_outputs
        write_outputs(run)
    finally:
        obj.close()
    return run
