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
from typing import Any, Sequence, TypedDict

import numpy as np

from scipy.stats import rankdata

from autoprox.core.config import ConfigError, check_ranges
from autoprox.core.progress import Progress
from autoprox.data.benchmark import DEFAULT_TARGETS, load_archs, split3, split_cv
from autoprox.eval.fitness import INVALID, JcmVariant, invalid_reason, jcm, orient
from autoprox.eval.uncertainty import partial_kendall
from autoprox.parallel import session
from autoprox.parallel.backends import Backend, combine, make_backend, part_expressions
from autoprox.proxy.graph import DATA_FREE
from autoprox.proxy.spec import resolve
from autoprox.spaces import get_space
from autoprox.stats.passes import families_of_passes, passes_for
from autoprox.stats.provider import ScoringConfig

FOLDS = ("train", "val", "test")
COMBINE = ("mean", "min")  # how a fold's figure pools the spaces


class SpaceFigures(TypedDict, total=False):
    """One space's figures of a proxy: per non-empty fold its JCM and ``<fold>_tau`` (target -> tau)."""

    train: float
    val: float
    test: float
    train_tau: dict[str, float]
    val_tau: dict[str, float]
    test_tau: dict[str, float]


class ProxyRecord(TypedDict, total=False):
    """What ``Objective.record`` says of one proxy (plain data: ``history.jsonl`` holds it, with the
    ``hash``, ``expression`` and ``step`` the run adds). Folds' JCMs are means over spaces (weighted by
    ``objective.weights``), None where a fold is empty or undefined; ``train`` is ``INVALID`` for an
    invalid proxy, whose ``reason`` says why."""

    sign: int                               # the orientation (``fitness.orient``) every fold uses
    train: float
    val: float | None
    test: float | None
    per_space: dict[str, SpaceFigures]
    reason: str | None
    ranking: str                            # fingerprint of the order it puts the archs in
    beyond_train: float                     # with ``beyond_size``: train partial tau given #params
    fitness: float                          # with ``beyond_size``: what selection reads
    hash: str
    expression: str
    step: int


@dataclass(frozen=True)
class ObjectiveConfig:
    """Which archs and accuracies a proxy is judged on, and how they are split."""

    spaces: tuple[str, ...] = ("autoformer",)
    targets: tuple[str, ...] = DEFAULT_TARGETS
    jcm: JcmVariant = "mean_tau"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    cv_folds: int = 0               # >= 2: the test fold is fold ``cv_fold`` of a cv_folds-way partition
    cv_fold: int = 0
    beyond_size: float = 0.0        # fitness = train JCM + this * train partial tau given #params
    limit: int | None = None
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    bench: dict[str, str] = field(default_factory=dict)  # space -> benchmark JSON (default: the shipped one)
    space_targets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # space -> its targets (else ``targets``)
    weights: dict[str, float] = field(default_factory=dict)  # space -> weight in the mean over spaces (else 1)
    subset: dict[str, int] = field(default_factory=dict)  # space -> its file's pre-registered subset of N archs
    combine: str = "mean"           # a fold's figure over spaces: their (weighted) "mean", or the worst, "min"

    def __post_init__(self) -> None:
        for key in ("bench", "space_targets", "weights", "subset"):
            stray = sorted(set(getattr(self, key)) - set(self.spaces))
            if stray:
                raise ValueError(f"objective.{key} names space(s) {stray} that are not in objective.spaces "
                                 f"{list(self.spaces)}")
        bad = {s: w for s, w in self.weights.items() if not (isinstance(w, (int, float)) and 0 < w <= 1000)}
        if bad or any(not t for t in self.space_targets.values()):
            raise ConfigError(f"objective: weights must lie in (0, 1000] and space_targets be non-empty, got "
                              f"{bad or self.space_targets}")
        if self.combine not in COMBINE:
            raise ConfigError(f"objective: combine must be one of {COMBINE}, got {self.combine!r}")
        if not self.spaces or not self.targets:
            raise ValueError("objective needs at least one space and one target")
        check_ranges(self, "objective", {"val_fraction": (0, 0.9, "()"), "test_fraction": (0, 0.9, "[)"),
                                         "limit": (1, None), "beyond_size": (0, 10), "cv_folds": (0, None)})
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(f"objective: val_fraction + test_fraction must be < 0.9 (training needs archs), "
                              f"got {self.val_fraction + self.test_fraction:g}")
        if self.cv_folds and (self.cv_folds < 2 or not 0 <= self.cv_fold < self.cv_folds):
            raise ConfigError(f"objective: need cv_folds >= 2 and 0 <= cv_fold < cv_folds, "
                              f"got {self.cv_folds}, {self.cv_fold}")

    def targets_of(self, space: str) -> tuple[str, ...]:
        return self.space_targets.get(space, self.targets)

    def weight(self, space: str) -> float:
        return float(self.weights.get(space, 1.0))


@dataclass
class SpaceData:
    name: str
    archs: list[dict]
    targets: dict[str, np.ndarray]
    folds: dict[str, np.ndarray]
    backend: Backend | None = None
    size: np.ndarray | None = None  # #params of each arch (as the num_params leaf counts it)


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
            targets = cfg.targets_of(space)
            bench, archs, _ = load_archs(space, cfg.bench.get(space), limit=cfg.limit, targets=targets,
                                         subset=cfg.subset.get(space))
            ys = {t: bench.values(t)[:len(archs)] for t in targets}
            folds = (split_cv(len(archs), cfg.cv_folds, cfg.cv_fold, cfg.val_fraction, cfg.split_seed)
                     if cfg.cv_folds else split3(len(archs), cfg.val_fraction, cfg.test_fraction, cfg.split_seed))
            sc = cfg.scoring.batch
            size = np.array([get_space(space).num_params(a, sc.num_classes, sc.resolution) for a in archs], float)
            self.spaces.append(SpaceData(space, archs, ys, folds, size=size))
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
        total = sum(len(sd.archs) for sd in self.spaces)
        with Progress("evolve: statistics of " + "+".join(sd.name for sd in self.spaces), total) as prog:
            for sd in self.spaces:
                sd.backend = make_backend(kind, sd.name, self.cfg.scoring, workers=workers, address=address)
                waits.append(sd.backend.start_load(sd.archs, self.families, prog.advance))
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

    def proxy_scores(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """(proxies x archs) scores per space of proxy texts (expressions or fused ``fusion[a | b]``):
        every distinct part scored once, fused proxies combined over each space's archs."""
        proxies = [resolve(t) for t in texts]
        exprs = part_expressions(proxies)
        return {name: combine(proxies, exprs, m) for name, m in self.scores(exprs).items()}

    def probe(self, texts: Sequence[str], first: int = 3) -> list[str | None]:
        """Why each proxy text is useless on the first ``first`` archs of every worker of every
        space (a part non-finite there, or constant across them), or None: a cheap screen
        before the full evaluation."""
        proxies = [resolve(t) for t in texts]
        exprs = part_expressions(proxies)
        bad: dict[str, str] = {}
        for sd in self.spaces:
            m = sd.backend.probe(exprs, first)  # type: ignore[union-attr]
            for e, row in zip(exprs, m):
                if e not in bad and (reason := invalid_reason(row)):
                    bad[e] = f"{sd.name}: {reason} on {len(row)} probe archs"
        return [next((bad[str(q.expr)] for q in p.parts if str(q.expr) in bad), None) for p in proxies]

    def evaluate(self, texts: Sequence[str]) -> list[ProxyRecord]:
        """One record per proxy text: sign, train/val/test JCM, per-space and per-target figures."""
        if not texts:
            return []
        mats = self.proxy_scores(texts)
        return [self.record({sd.name: mats[sd.name][i] for sd in self.spaces}) for i in range(len(texts))]

    def record(self, scores: dict[str, np.ndarray]) -> ProxyRecord:
        """Fold JCMs of one proxy from its per-space score vectors."""
        taus = []
        for sd in self.spaces:
            reason = invalid_reason(scores[sd.name])
            if not reason:
                idx = sd.folds["train"]
                f = jcm(scores[sd.name][idx], {t: y[idx] for t, y in sd.targets.items()}, "mean_tau", sign=1)
                reason = None if f.valid else f.reason
            if reason:
                return _invalid(f"{sd.name}: {reason}")
            taus.append(f.jcm)
        sign = orient(taus, [self.cfg.weight(sd.name) for sd in self.spaces]) if self.cfg.jcm == "mean_tau" else 1
        per_space = {sd.name: self._fold_figures(sd, scores[sd.name], sign) for sd in self.spaces}
        out: ProxyRecord = {"sign": sign, "per_space": per_space, "reason": None,
                            "ranking": self.ranking(scores, sign)}
        for fold in FOLDS:
            vals = [per_space[s][fold] for s in per_space if fold in per_space[s]]
            w = [self.cfg.weight(s) for s in per_space if fold in per_space[s]]
            ok = bool(vals) and bool(np.all(np.isfinite(vals)))
            out[fold] = (float(np.min(vals)) if self.cfg.combine == "min" else float(np.average(vals, weights=w))
                         ) if ok else None
        if out["train"] is None:
            out.update(train=INVALID, reason="undefined train correlation")
        elif self.cfg.beyond_size > 0:
            beyond = float(np.average([self._beyond(sd, sign * scores[sd.name]) for sd in self.spaces],
                                      weights=[self.cfg.weight(sd.name) for sd in self.spaces]))
            out.update(beyond_train=beyond, fitness=out["train"] + self.cfg.beyond_size * beyond)
        return out

    def _beyond(self, sd: SpaceData, oriented: np.ndarray) -> float:
        """Mean over the targets where it is defined of the train fold's partial Kendall tau given
        #params (undefined where the proxy or a target ranks exactly as #params); 0 when undefined
        for every target: a proxy that ranks exactly as #params shows nothing beyond size."""
        idx = sd.folds["train"]
        vals = np.array([partial_kendall(oriented[idx], y[idx], sd.size[idx])  # type: ignore[index]
                         for y in sd.targets.values()])
        return float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() else 0.0

    def _fold_figures(self, sd: SpaceData, scores: np.ndarray, sign: int) -> SpaceFigures:
        """JCM and per-target Kendall tau of one space's scores on each non-empty fold."""
        figs: dict[str, Any] = {}
        for fold, idx in sd.folds.items():
            if len(idx) == 0:
                continue
            f = jcm(scores[idx], {t: y[idx] for t, y in sd.targets.items()}, self.cfg.jcm, sign=sign)
            figs[fold] = f.jcm if f.valid else math.nan
            figs[fold + "_tau"] = {t: round(c["kendall"], 5) for t, c in f.per_target.items()}
        return figs  # type: ignore[return-value]

    def ranking(self, scores: dict[str, np.ndarray], sign: int = 1) -> str:
        """Fingerprint of the order a proxy (oriented by ``sign``) puts every space's archs in,
        labels unused: proxies that differ by a monotone map (``log(x)`` vs ``x``) share it."""
        h = hashlib.sha256()
        for sd in self.spaces:
            h.update(rankdata(sign * np.asarray(scores[sd.name], dtype=np.float64)).astype(np.float64).tobytes())
        return h.hexdigest()[:16]


def _invalid(reason: str) -> ProxyRecord:
    return {"sign": 1, "train": INVALID, "val": None, "test": None, "per_space": {}, "reason": reason}


def families_of(leaf_names: Sequence[str]) -> list[str]:
    """The statistic families to load for proxies built from ``leaf_names``."""
    return sorted(families_of_passes(passes_for(set(leaf_names) - DATA_FREE)))
