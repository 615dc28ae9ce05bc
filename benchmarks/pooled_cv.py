"""Pool several ``evolve --cv`` runs of one procedure over the same archs (different partitions,
e.g. ``--set objective.split_seed=1``): the picks' out-of-fold JCM against #params and
``depth_width``, with one paired bootstrap that resamples the *archs* once per draw, so an arch
held out in two partitions carries the same weight in both (they are not independent folds).

    python benchmarks/pooled_cv.py runs/c100_kd runs/rep_c100_kd [--pick train_val]

Each fold's pick follows its run's ``pick`` rule, or ``--pick RULE`` for every run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from autoprox.eval.fitness import jcm
from autoprox.eval.uncertainty import LEVEL, N_BOOT, boot_difference, boot_jcm, resample_weights
from autoprox.discovery.cv import BASELINES
from autoprox.discovery.config import PICKS, load_evolve_config
from autoprox.discovery.loop import pick_index
from autoprox.discovery.objective import Objective, families_of
from autoprox.discovery.report import read_hall_of_fame
from autoprox.proxy.zoo import get_proxy


def held_out(run: Path, rule: str | None = None) -> list[tuple[str, int, dict]]:
    """(expression, sign, folds per space) of each fold's pick, under ``rule`` (default: the run's)."""
    out = []
    for fold in sorted(run.glob("fold-*")):
        cfg = load_evolve_config(fold / "config.yaml")
        obj = Objective(cfg.objective, [])
        hof = read_hall_of_fame(fold, cfg.variation)
        pick = hof[pick_index(hof, rule or cfg.pick, obj.spaces)]
        out.append((pick["expression"], pick["sign"], {sd.name: sd.folds for sd in obj.spaces}))
    return out


def main(runs: list[str], rule: str | None = None, n_boot: int = N_BOOT, seed: int = 0) -> None:
    cfg = load_evolve_config(Path(runs[0]) / "fold-0" / "config.yaml")
    folds = [f for r in runs for f in held_out(Path(r), rule)]
    texts = [e for e, _, _ in folds] + [str(get_proxy(b).parts[0].expr) for b in BASELINES]
    var = cfg.variation
    obj = Objective(cfg.objective, families_of(var.leaves + var.single_leaves))
    obj.open()
    try:
        mats = obj.proxy_scores(texts)
    finally:
        obj.close()
    for sd in obj.spaces:
        w = resample_weights(len(sd.archs), n_boot, seed)
        est: dict[str, list] = {"pick": [], **{b: [] for b in BASELINES}}
        boot: dict[str, list] = {k: [] for k in est}
        for i, (_, sign, fs) in enumerate(folds):
            f = fs[sd.name]
            ys = {t: y[f["test"]] for t, y in sd.targets.items()}
            for name, row, sg in (("pick", i, sign), *((b, len(folds) + j, None) for j, b in enumerate(BASELINES))):
                s = mats[sd.name][row]
                if sg is None:  # a baseline: oriented on the fold's train archs, as evolve does
                    tr = jcm(s[f["train"]], {t: y[f["train"]] for t, y in sd.targets.items()}, cfg.objective.jcm, sign=1)
                    sg = 1 if tr.jcm >= 0 else -1
                e, b = boot_jcm(s[f["test"]], ys, w[:, f["test"]], cfg.objective.jcm, sg)
                est[name].append(e)
                boot[name].append(b)
        print(f"{sd.name}: {len(folds)} held-out folds from {len(runs)} runs; picks' JCM {np.mean(est['pick']):.3f}")
        for b in BASELINES:
            d = boot_difference(float(np.mean(est["pick"]) - np.mean(est[b])),
                            np.mean(boot["pick"], axis=0) - np.mean(boot[b], axis=0), LEVEL)
            print(f"  vs {b} ({np.mean(est[b]):.3f}): {d.estimate:+.3f} [{d.lo:.3f}, {d.hi:.3f}], p = {d.p:.3f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="folders of evolve --cv runs of one procedure")
    ap.add_argument("--pick", choices=PICKS, help="one pick rule for every run (default: each run's own)")
    a = ap.parse_args()
    main(a.runs, a.pick)
