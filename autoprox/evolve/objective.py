"""The evolution objective: JCM of proxies on train / validation / test folds of benchmark archs.

Each space's labelled archs are split once (seeded) into train, validation and test
folds. A proxy is scored on every arch through a scoring backend (one pass for a
whole population), oriented on the train fold, and that orientation is kept for
the other folds. Evolution sees only the train JCM; picks use validation; test is
reported. With several spaces the figures are means over spaces, the orientation
set by the summed train correlation.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from scipy.stats import rankdata

from autoprox.core.config import ConfigError, check_ranges
from autoprox.data.benchmark import DEFAULT_TARGETS, load_archs, split3
from autoprox.eval.fitness import INVALID, JcmVariant, invalid_reason, jcm
from autoprox.parallel import session
from autoprox.parallel.backends import Backend, make_backend
from autoprox.proxy.graph import DATA_FREE
from autoprox.stats.passes import families_of_passes, passes_for
from autoprox.stats.provider import ScoringConfig

FOLDS = ("train", "val", "test")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Which archs and accuracies a proxy is judged on, and how they are split."""

    spaces: tuple[str, ...] = ("autoformer",)
    targets: tuple[str, ...] = DEFAULT_TARGETS
    jcm: JcmVariant = "mean_tau"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    limit: int | None = None
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self) -> None:
        if not self.spaces or not self.targets:
            raise ValueError("objective needs at least one space and one target")
        check_ranges(self, "objective", {"val_fraction": (0, 0.9, "()"), "test_fraction": (0, 0.9, "[)"),
                                         "limit": (1, None)})
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(f"objective: val_fraction + test_fraction must be < 0.9 (training needs archs), "
                              f"got {self.val_fraction + self.test_fraction:g}")


@dataclass
class SpaceData:
    name: str
    archs: list[dict]
    targets: dict[str, np.ndarray]
    folds: dict[str, np.ndarray]
    backend: Backend | None = None


class Objective:
    """Scores proxy expressions on every space's archs and returns their fold JCMs."""

    def __init__(self, cfg: ObjectiveConfig, families: Sequence[str], backend: str = "serial",
                 workers: int = 2, address: str | None = None,
                 connect_timeout: float = session.CONNECT_TIMEOUT) -> None:
        self.cfg = cfg
        self.families = sorted(set(families) - DATA_FREE)
        passes_for(self.families)  # unknown statistic -> clear error before any work
        self.spaces: list[SpaceData] = []
        for space in cfg.spaces:
            bench, archs, _ = load_archs(space, limit=cfg.limit, targets=cfg.targets)
            ys = {t: bench.values(t)[:len(archs)] for t in cfg.targets}
            folds = split3(len(archs), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
            self.spaces.append(SpaceData(space, archs, ys, folds))
        session.check_workers(workers)
        self._backend = (backend, workers, address)
        self._timeout = connect_timeout
        self._owns_ray = False

    def open(self) -> None:
        """Start the backends and load every space's statistics (computed once, then cached)."""
        kind, workers, address = self._backend
        if kind == "ray":  # one session for every space's workers
            self._owns_ray = session.start(address, workers * len(self.spaces), self._timeout)
        waits = []
        for sd in self.spaces:
            sd.backend = make_backend(kind, sd.name, self.cfg.scoring, workers=workers, address=address)
            waits.append(sd.backend.start_load(sd.archs, self.families))
        for wait in waits:  # on Ray every space's statistics load (or are computed) at once
            wait()

    def close(self) -> None:
        """Stop the backends, and the local Ray session if ``open`` started it."""
        for sd in self.spaces:
            if sd.backend is not None:
                sd.backend.close()
                sd.backend = None
        session.stop(self._owns_ray)
        self._owns_ray = False

    def scores(self, exprs: Sequence[str]) -> dict[str, np.ndarray]:
        """(proxies x archs) raw scores per space."""
        if any(sd.backend is None for sd in self.spaces):
            raise RuntimeError("Objective.open() must be called before scoring")
        waits = {sd.name: sd.backend.submit(list(exprs)) for sd in self.spaces}  # type: ignore[union-attr]
        return {name: wait() for name, wait in waits.items()}  # every space's workers busy at once

    def evaluate(self, exprs: Sequence[str]) -> list[dict]:
        """One record per expression: sign, train/val/test JCM, per-space and per-target figures."""
        if not exprs:
            return []
        mats = self.scores(exprs)
        return [self.record({sd.name: mats[sd.name][i] for sd in self.spaces}) for i in range(len(exprs))]

    def record(self, scores: dict[str, np.ndarray]) -> dict:
        """Fold JCMs of one proxy from its per-space score vectors."""
        tau_sum = 0.0
        for sd in self.spaces:
            reason = invalid_reason(scores[sd.name])
            if not reason:
                idx = sd.folds["train"]
                f = jcm(scores[sd.name][idx], {t: y[idx] for t, y in sd.targets.items()}, "mean_tau", sign=1)
                reason = None if f.valid else f.reason
            if reason:
                return _invalid(f"{sd.name}: {reason}")
            tau_sum += f.jcm
        sign = -1 if tau_sum < 0 and self.cfg.jcm == "mean_tau" else 1
        per_space = {sd.name: self._fold_figures(sd, scores[sd.name], sign) for sd in self.spaces}
        out = {"sign": sign, "per_space": per_space, "reason": None, "ranking": self.ranking(scores, sign)}
        for fold in FOLDS:
            vals = [per_space[s][fold] for s in per_space if fold in per_space[s]]
            out[fold] = float(np.mean(vals)) if vals and np.all(np.isfinite(vals)) else None
        if out["train"] is None:
            out.update(train=INVALID, reason="undefined train correlation")
        return out

    def _fold_figures(self, sd: SpaceData, scores: np.ndarray, sign: int) -> dict:
        """JCM and per-target Kendall tau of one space's scores on each non-empty fold."""
        figs: dict[str, Any] = {}
        for fold, idx in sd.folds.items():
            if len(idx) == 0:
                continue
            f = jcm(scores[idx], {t: y[idx] for t, y in sd.targets.items()}, self.cfg.jcm, sign=sign)
            figs[fold] = f.jcm if f.valid else math.nan
            figs[fold + "_tau"] = {t: round(c["kendall"], 5) for t, c in f.per_target.items()}
        return figs

    def ranking(self, scores: dict[str, np.ndarray], sign: int = 1) -> str:
        """Fingerprint of the order a proxy (oriented by ``sign``) puts every space's archs in,
        labels unused: proxies that differ by a monotone map (``log(x)`` vs ``x``) share it."""
        h = hashlib.sha256()
        for sd in self.spaces:
            h.update(rankdata(sign * np.asarray(scores[sd.name], dtype=np.float64)).astype(np.float64).tobytes())
        return h.hexdigest()[:16]


def _invalid(reason: str) -> dict:
    return {"sign": 1, "train": INVALID, "val": None, "test": None, "per_space": {}, "reason": reason}


def families_of(leaf_names: Sequence[str]) -> list[str]:
    """The statistic families to load for proxies built from ``leaf_names``."""
    return sorted(families_of_passes(passes_for(set(leaf_names) - DATA_FREE)))
