"""Every config in runs/ runs end to end, shrunk (4 genomes, one step, 10 archs per space; of
AutoFormer-Small and -Base, whose models cost most, 6 archs at the space's least depth, width and
MLP ratio; each pre-registered subset cut to its file; a tiny batch): a seed that reads a statistic
its run does not load, a leaf no pass provides, a space that cannot be built, fail here instead of
after a user's statistics phase (``runs/autoformer.yaml`` did, for the README's second evolve
command). The configs share one statistics cache: an entry is keyed by what it holds, and each run
still loads only the passes its own leaves and seeds read."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from autoprox.discovery.config import load_evolve_config
from autoprox.discovery.run import evolve
from autoprox.stats.base import StatsConfig

from test_native_bench import native_records

RUNS = sorted((Path(__file__).parents[1] / "runs").glob("*.yaml"))
NATIVE = {"autoformer-tiny", "autoformer-small", "autoformer-base"}  # benchmarks users download


LARGE = {"autoformer-small": 6, "autoformer-base": 6}  # the fewest a train/val/test split takes (else 12)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shipped-runs-cache")


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_every_shipped_run_config_runs_small(path, tmp_path, tiny_batch_cfg, shared_cache):
    cfg = load_evolve_config(path)
    obj = cfg.objective
    bench, subset = dict(obj.bench), dict(obj.subset)
    for space in set(obj.spaces) & NATIVE:
        n = LARGE.get(space, 12)
        bench[space] = str(tmp_path / f"{space}.json")
        Path(bench[space]).write_text(json.dumps(native_records(space, n, smallest=space in LARGE)))
        if space in subset:  # a subset larger than its file is refused
            subset[space] = min(subset[space], n)
    scoring = dataclasses.replace(obj.scoring, batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                                  cache_dir=str(shared_cache))
    small = dataclasses.replace(cfg, population=4, offspring=4, steps=1, hall_of_fame=2,
                                objective=dataclasses.replace(obj, limit=10, bench=bench, scoring=scoring,
                                                              subset=subset))
    run = evolve(small, tmp_path / "run")
    assert run.step_no == 1 and run.evals >= 4
    hist = [json.loads(ln) for ln in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    seeds = hist[:len(cfg.seed_proxies)]
    assert all(np.isfinite(h["train"]) for h in seeds), [h.get("invalid", h["train"]) for h in seeds]
    assert (tmp_path / "run" / "hall_of_fame.yaml").is_file()  # (10 archs leave too few to pick on)
