"""``autoprox evolve``'s driver: checks, the run folder, the steps, the outputs."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable

from autoprox.core.checkpoint import clean_temporaries, load_state
from autoprox.core.config import ConfigError, save_config
from autoprox.core.io import check_writable_dir
from autoprox.core.runs import check_owner, claimed
from autoprox.discovery.config import EvolveConfig, config_changes, run_families, seed_genomes
from autoprox.discovery.loop import Run
from autoprox.discovery.objective import Objective
from autoprox.eval.bench import BASELINES
from autoprox.discovery.report import run_doc, write_outputs
from autoprox.parallel.session import CONNECT_TIMEOUT


def _prepare(cfg: EvolveConfig, out: Path, resume: bool) -> None:
    """Every check that can fail before the run folder is touched."""
    if not resume and (out / "checkpoint.json").exists():
        raise ConfigError(f"{out} already holds a run: resume it (--resume; resume=True in Python) "
                          f"or choose another folder (--out; out=)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run folder {out} is a file, not a folder")
    check_owner(out, "evolve")
    seed_genomes(cfg)  # unknown seed: the error names zoo proxies, before anything is written
    check_writable_dir(out)
    state = load_state(out / "checkpoint.json") if resume else None
    if state is not None and (diff := config_changes(state.get("config"), cfg)):
        raise ConfigError(f"{out}: the config differs from the checkpointed run's: {'; '.join(diff)}")


def numbered(on_step: Callable[[dict], None] | None, name: str, index: int,
             runs: int) -> Callable[[dict], None] | None:
    """``on_step`` for run ``index`` of ``runs`` (a cv fold, a transfer source run): its rows carry
    ``run``, ``run_index`` and ``runs``, so that one progress line counts the steps of them all."""
    if on_step is None:
        return None
    return lambda row: on_step({**row, "run": name, "run_index": index, "runs": runs})


def evolve(cfg: EvolveConfig, out: str | Path, resume: bool = False, backend: str = "serial",
           workers: int = 2, address: str | None = None,
           on_step: Callable[[dict], None] | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> Run:
    """Run (or resume) an evolution in ``out``; returns the finished ``Run``. ``resume`` on a
    folder without a checkpoint (killed before the first one) starts the run afresh.
    Everything that can fail on the user's input (the config, the seeds, the backend, the
    statistics) runs before the run folder is created or touched."""
    out = Path(out)
    _prepare(cfg, out, resume)
    obj = Objective(cfg.objective, run_families(cfg), backend, workers, address,
                    connect_timeout)
    run = Run(cfg, out, obj)
    folder = ExitStack()
    try:
        obj.open()  # statistics load (the longest phase) before the folder exists: a kill here leaves nothing
        folder.enter_context(claimed(out, "evolve"))  # made, recorded and locked until the run ends
        clean_temporaries(out)
        fresh = not (resume and run.restore())
        reported = not fresh and run.step_no >= cfg.steps and _outputs_current(out, run)
        if fresh:
            run.history_path.unlink(missing_ok=True)
        save_config(replace(cfg, objective=replace(cfg.objective, scoring=cfg.objective.scoring.resolved())),
                    out / "config.yaml")
        if fresh:
            run.initialise()
            _step_done(run, on_step)
        while run.step_no < cfg.steps:
            run.step()
            _step_done(run, on_step)
        if reported:  # finished and written before (a --cv gather): only what the fold table reads
            run.report = run_doc(run, zoo_names=BASELINES)
        else:
            run.report = run_doc(run)
            write_outputs(out, run.report)
            run.wrote = True
    finally:
        obj.close()
        folder.close()
    return run


def _outputs_current(out: Path, run: Run) -> bool:
    """Whether ``out``'s outputs were written after the run's last step (they are written all at once)."""
    p = out / "progress.csv"
    return p.is_file() and len(p.read_text(encoding="utf-8").splitlines()) == len(run.progress_rows) + 1


def _step_done(run: Run, on_step: Callable[[dict], None] | None) -> None:
    run.progress_rows.append(run.summary())
    run.checkpoint()
    if on_step:
        on_step(run.progress_rows[-1])
