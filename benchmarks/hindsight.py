"""Is the pick rule or the search the limit? For each fold of an ``evolve --cv`` run: the held-out
JCM of the pick under each ``pick`` rule (the same hall of fame; the engine's ``pick_index`` decides), of
#params and of ``depth_width`` (no statistics needed: their leaves are the arch's), the oracle
ceiling on the same archs (``cv.held_out_ceiling``), and the best held-out JCM of *any* proxy the
run evaluated. That last one is chosen with the test fold: an optimistic bound, a maximum over hundreds of noisy candidates on 20 archs. If even it stays
below a target, no pick rule over that run can reach the target.
A fold cut before its report (no ``hall_of_fame.yaml``) is read from its checkpoint: the hall of
fame saved at the last finished step, each member looked up in ``history.jsonl``.

    python benchmarks/hindsight.py runs/discovery [runs/discovery_pit ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from autoprox.discovery.cv import BASELINES, held_out_ceiling
from autoprox.discovery.config import PICKS, load_evolve_config
from autoprox.discovery.loop import pick_index
from autoprox.discovery.objective import Objective
from autoprox.discovery.report import read_hall_of_fame
from autoprox.proxy.zoo import get_proxy


def fold_figures(fold: Path) -> dict[str, dict[str, float]]:
    """Per space: the held-out JCM of each rule's pick, the hindsight best, and #valid evaluated."""
    cfg = load_evolve_config(fold / "config.yaml")
    obj = Objective(cfg.objective, [])  # the folds only: no statistics are loaded
    recs = [json.loads(ln) for ln in (fold / "history.jsonl").read_text(encoding="utf-8").splitlines()]
    hof = read_hall_of_fame(fold, cfg.variation)
    picks = {rule: hof[pick_index(hof, rule, obj.spaces)] for rule in PICKS}
    obj.open()
    try:
        base = dict(zip(BASELINES, obj.evaluate([str(get_proxy(b).parts[0].expr) for b in BASELINES])))
    finally:
        obj.close()
    out = {}
    for sd in obj.spaces:
        tests = [t for r in recs if r.get("reason") is None
                 and np.isfinite(t := r.get("per_space", {}).get(sd.name, {}).get("test", np.nan))]
        out[sd.name] = {**{rule: p["per_space"][sd.name]["test"] for rule, p in picks.items()},
                        **{b: r["per_space"][sd.name]["test"] for b, r in base.items()},
                        "ceiling": held_out_ceiling(sd, cfg.objective.jcm), "hindsight": max(tests),
                        "evaluated": len(tests)}
    return out


def main(runs: list[str]) -> None:
    cols = [*(f"pick: {r}" for r in PICKS), *BASELINES, "ceiling", "best evaluated, in hindsight",
            "proxies per fold"]
    print("| run | space | folds | " + " | ".join(cols) + " |\n|---|---|---|" + "---|" * len(cols))
    for run in runs:
        per = [fold_figures(f) for f in sorted(Path(run).glob("fold-*"))]
        for space in per[0]:
            means = [np.mean([p[space][k] for p in per]) for k in (*PICKS, *BASELINES, "ceiling", "hindsight", "evaluated")]
            print(f"| {Path(run).name} | {space} | {len(per)} | " + " | ".join(f"{m:.3f}" for m in means[:-1])
                  + f" | {means[-1]:.0f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="folders of evolve --cv runs")
    main(ap.parse_args().runs)
