"""What ranks a benchmark best when only K of its archs are labelled: every method fitted on the
same K labels (or on none), scored on the same unlabelled archs.

A *draw* is K labelled archs of the target benchmark, chosen at random with a recorded seed; the
rest are its test archs. On each draw every method scores every arch of the benchmark:

- ``discovery``: one of the candidates a discovery on the other benchmarks found (its hall of fame
  and last population, each oriented on those benchmarks). K = 0: the run's own pick; K > 0: the
  candidate with the best ``(1 - w) * source JCM + w * tau on the K labels``, ``w = K / (K + PRIOR)``:
  the K labels weigh as much as the sources once there are ``PRIOR`` of them;
- ``discovery fused``: the ``FUSED_TOP`` candidates ranked first by that rule, fused by ridge weights on
  their within-benchmark ranks fitted on the K labels;
- ``discovery seeded`` (when the study runs them, ``discovery.seeded``): a few more generations of
  evolution from the candidates that rule ranks first, the rule itself the fitness, then its best;
- ``best zoo``: the hand-designed zoo proxy with the best tau on the K labels, oriented there (K = 0:
  chosen and oriented on the sources);
- ``ranker``: ridge on the within-benchmark ranks of the zoo scores and arch scalars, fitted on the
  sources plus the K labels or on the K labels alone, whichever a 5-fold cross-validation on the K
  labels prefers (K = 0: the sources);
- ``surrogate``: ridge on a one-hot encoding of each arch's choices, layer by layer, fitted on the K;
- ``zc surrogate``: the same ridge on the one-hot columns beside the zoo scores' ranks;
- ``zc trees``: gradient-boosted trees (``boosting.fit_trees``) on the same columns, the
  zero-cost-augmented predictor the field runs;
- ``params``, ``depth``, ``depth_width``: no labels.

The regressions fit the targets' mean within-benchmark rank (``alternatives.target_rank``). Every
figure is the JCM (mean Kendall tau over the targets) on the draw's test archs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import kendalltau

from autoprox.eval import alternatives as alt
from autoprox.eval.boosting import fit_trees
from autoprox.eval.fitness import JcmVariant
from autoprox.eval.uncertainty import LEVEL, Difference, Interval, boot_difference, boot_jcm, resample_weights
from autoprox.proxy.surrogate import one_hot, one_hot_fields

PRIOR = 20          # labels of the target that weigh as much as the source benchmarks
LABELLED = ("discovery fused", "discovery seeded", "surrogate", "zc surrogate", "zc trees")  # need K > 0
DISCOVERY = ("discovery", "discovery fused", "discovery seeded")  # the methods built on discovery
METHODS = ("discovery", "best zoo", "ranker", *LABELLED, *alt.FORMULAS)
FUSED_TOP = 5       # candidates a fused discovery weighs
MIN_LABELS = 4      # fewer labels than this cannot rank (no inner fold, no tau)


def draw_labels(n: int, k: int, draws: int, seed: int) -> list[np.ndarray]:
    """``draws`` sorted index sets of ``k`` labelled archs of ``n``; draw r uses seed ``seed + r``."""
    if k == 0:
        return [np.zeros(0, dtype=int)]
    if not MIN_LABELS <= k <= n - 3:
        raise ValueError(f"labels: K = {k} needs {MIN_LABELS} <= K <= {n - 3} for a benchmark of {n} archs")
    return [np.sort(np.random.default_rng(seed + r).choice(n, k, replace=False)) for r in range(draws)]


@dataclass(frozen=True)
class Target:
    """The benchmark held out: the candidates' oriented scores on its archs, their source figures,
    the source run's pick, and its zoo scores, targets and archs (``alt.Part``)."""

    candidates: np.ndarray          # (candidates x archs), oriented on the sources
    source_fit: np.ndarray          # (candidates,) source JCM each candidate was chosen by
    pick: int                       # index of the source run's own pick among the candidates
    part: alt.Part
    sources: tuple[alt.Part, ...]   # the source benchmarks' archs (for K = 0 and the ranker's choice)
    variant: JcmVariant = "mean_tau"
    seeded: Mapping[tuple[int, ...], tuple[np.ndarray, str]] = field(default_factory=dict)
    # labelled archs of a draw -> the seeded evolution's pick there: its oriented scores and expression


def finite(s: np.ndarray) -> np.ndarray:
    """Scores with every non-finite value ranked last (below the lowest finite score)."""
    s = np.asarray(s, dtype=np.float64)
    ok = np.isfinite(s)
    return s if ok.all() else np.where(ok, s, (s[ok].min() - 1.0) if ok.any() else 0.0)


def jcm_on(s: np.ndarray, part: alt.Part, variant: JcmVariant = "mean_tau") -> float:
    """JCM of ``s`` as it is on ``part`` (non-finite scores ranked last); a constant ranking counts as 0."""
    v = alt.jcm_of(finite(s), part.targets, variant)
    return 0.0 if v is None or not np.isfinite(v) else float(v)


def reselection(source_fit: np.ndarray | float, label_fit: np.ndarray | float, k: int) -> np.ndarray | float:
    """The rule discovery chooses by on K labels: ``(1 - w) * source JCM + w * JCM on the K``,
    ``w = K / (K + PRIOR)``."""
    w = k / (k + PRIOR)
    return (1 - w) * source_fit + w * label_fit


def _ridge_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return alt.ridge(x, y, alt.choose_alpha(x, y))


def _zc_columns(part: alt.Part, zoo: Sequence[str], fields: Mapping) -> np.ndarray:
    return np.concatenate([one_hot(part.archs, fields), alt.features(part, zoo)], axis=1)


def _ranker_choice(t: Target, lab: np.ndarray, inputs: tuple[str, ...], seed: int) -> np.ndarray:
    """Ranker weights fitted on sources + K or on the K alone, by a 5-fold CV tau on the K labels."""
    part = t.part.subset(lab)
    x_k, y_k = alt.features(t.part, inputs)[lab], alt.target_rank(part)
    x_s = np.concatenate([alt.features(p, inputs) for p in t.sources])
    y_s = np.concatenate([alt.target_rank(p) for p in t.sources])
    folds = np.random.default_rng(seed).permutation(len(lab)) % alt.INNER_FOLDS
    cv = {"k": [], "sk": []}
    for f in range(alt.INNER_FOLDS):
        tr, te = folds != f, folds == f
        if te.sum() < 2:
            continue
        for name, (x, y) in {"k": (x_k[tr], y_k[tr]),
                             "sk": (np.concatenate([x_s, x_k[tr]]), np.concatenate([y_s, y_k[tr]]))}.items():
            tau = kendalltau(alt.predict(alt.ridge(x, y, 1.0), x_k[te]), y_k[te])[0]
            cv[name].append(0.0 if not np.isfinite(tau) else tau)
    alone = np.mean(cv["k"]) > np.mean(cv["sk"]) if cv["k"] else False
    return _ridge_fit(x_k, y_k) if alone else _ridge_fit(np.concatenate([x_s, x_k]), np.concatenate([y_s, y_k]))


def methods_at(t: Target, lab: np.ndarray, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every method's scores on every arch of ``t`` after seeing the labels of archs ``lab``, and
    what the label-fitted ones chose (candidate, zoo proxy) in words."""
    part, k = t.part, len(lab)
    zoo = [n for n in alt.hand_designed(list(part.scores)) if n in t.sources[0].scores]
    inputs = tuple(n for n in (*zoo, *alt.SCALARS) if n in part.scores and all(n in p.scores for p in t.sources))
    out = {f: np.asarray(part.scores[f], dtype=np.float64) for f in alt.FORMULAS}
    fitted = alt.fit(list(t.sources), t.variant)
    if k == 0:
        name, sign = fitted.best
        out |= {"discovery": t.candidates[t.pick], "best zoo": sign * np.asarray(part.scores[name], dtype=np.float64),
                "ranker": alt.predict(fitted.ranker[1], alt.features(part, fitted.ranker[0]))}
        return {m: finite(v) for m, v in out.items()}, {"discovery": f"candidate {t.pick}", "best zoo": name}
    known = part.subset(lab)
    fit_k = np.array([jcm_on(c[lab], known, t.variant) for c in t.candidates])
    chosen = reselection(t.source_fit, fit_k, k)
    best_c = int(np.argmax(chosen))
    top = np.argsort(-chosen, kind="stable")[:FUSED_TOP]
    ranks = np.stack([alt.within_ranks(finite(t.candidates[i])) for i in top], axis=1)
    zoo_tau = {n: alt.jcm_of(finite(part.scores[n])[lab], known.targets) for n in zoo}
    zoo_tau = {n: v for n, v in zoo_tau.items() if v is not None and np.isfinite(v) and v != 0}
    # nothing ranks the K labels (their accuracies tie): the choice made on the sources stands
    best_zoo, zoo_sign = (max(zoo_tau, key=lambda n: abs(zoo_tau[n])), 0) if zoo_tau else fitted.best
    zoo_sign = zoo_sign or int(np.sign(zoo_tau[best_zoo]))
    y = alt.target_rank(known)
    fields = one_hot_fields(part.archs)
    onehot = one_hot(part.archs, fields)
    zc = _zc_columns(part, zoo, fields)
    out |= {"discovery": t.candidates[best_c], "discovery fused": alt.predict(_ridge_fit(ranks[lab], y), ranks),
            "best zoo": zoo_sign * np.asarray(part.scores[best_zoo], dtype=np.float64),
            "ranker": alt.predict(_ranker_choice(t, lab, inputs, seed), alt.features(part, inputs)),
            "surrogate": alt.predict(_ridge_fit(onehot[lab], y), onehot),
            "zc surrogate": alt.predict(_ridge_fit(zc[lab], y), zc),
            "zc trees": fit_trees(zc[lab], y, seed).predict(zc)}
    chose = {"discovery": f"candidate {best_c}", "best zoo": best_zoo}
    if (seeded := t.seeded.get(tuple(int(i) for i in lab))) is not None:
        out["discovery seeded"], chose["discovery seeded"] = seeded
    return {m: finite(v) for m, v in out.items()}, chose


def evaluate(t: Target, ks: Sequence[int], draws: int, seed: int = 0, n_boot: int = 500) -> list[dict]:
    """One record per (K, draw): the labelled archs, what each method chose, and each method's JCM
    and first arch (its top-scored test arch's accuracy on the first target) on the test archs; under
    ``_boot`` (not meant for files) each method's JCM on ``n_boot`` resamples of the test archs, the
    same resamples for every method of the draw."""
    n, rows = len(t.part.archs), []
    first = next(iter(t.part.targets))
    for k in ks:
        for r, lab in enumerate(draw_labels(n, k, draws, seed)):
            test = np.setdiff1d(np.arange(n), lab)
            scores, chose = methods_at(t, lab, seed + r)
            held = t.part.subset(test)
            w = resample_weights(len(test), n_boot, seed + 7919 * k + r)
            rows.append({"k": k, "draw": r, "seed": seed + r, "labelled": lab.tolist(), "chose": chose,
                         "tau": {m: jcm_on(s[test], held, t.variant) for m, s in scores.items()},
                         "first": {m: float(held.targets[first][int(np.argmax(s[test]))]) for m, s in scores.items()},
                         "_boot": {m: boot_jcm(s[test], held.targets, w, t.variant, sign=1)[1]
                                   for m, s in scores.items()}})
    return rows


def _replicates(at: Sequence[dict], method: str, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(method's, discovery - method's) mean JCM on each two-level resample: the draws resampled, and
    within each chosen draw its own resample of the test archs."""
    a = np.stack([r["_boot"][method] for r in at])                      # (draws, resamples)
    d = np.stack([r["_boot"]["discovery"] for r in at]) - a
    b = min(n_boot, a.shape[1])
    pick = np.random.default_rng(seed).integers(0, len(at), (b, len(at)))  # draws of each replicate
    col = np.arange(b)[:, None]
    with warnings.catch_warnings():  # a resample where every chosen draw is undefined stays NaN (dropped later)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a[pick, col], axis=1), np.nanmean(d[pick, col], axis=1)


def summary(rows: Sequence[dict], method: str, k: int, n_boot: int = 500, seed: int = 0,
            level: float = LEVEL) -> tuple[Interval, Difference] | None:
    """Mean JCM over the draws of K with its interval and the paired difference discovery - method,
    both over two-level resamples (draws, then each draw's test archs; K = 0: the archs); None where
    the method was not run at K."""
    at = [r for r in rows if r["k"] == k and method in r["tau"]]
    if not at:
        return None
    est = float(np.mean([r["tau"][method] for r in at]))
    diff = float(np.mean([r["tau"]["discovery"] - r["tau"][method] for r in at]))
    ba, bd = _replicates(at, method, n_boot, seed)
    q = (1 - level) / 2
    iv = Interval(est, float(np.nanquantile(ba, q)), float(np.nanquantile(ba, 1 - q)))
    if method == "discovery":
        return iv, Difference(0.0, float("nan"), float("nan"), float("nan"))
    return iv, boot_difference(diff, bd, level)


def pooled_difference(by_bench: Mapping[str, Sequence[dict]], method: str, k: int, n_boot: int = 500,
                      seed: int = 0, level: float = LEVEL) -> Difference | None:
    """discovery - method averaged evenly over the benchmarks, each resampled as in ``summary``."""
    per = []
    for i, rows in enumerate(by_bench.values()):
        at = [r for r in rows if r["k"] == k and method in r["tau"]]
        if not at:
            return None
        per.append((np.mean([r["tau"]["discovery"] - r["tau"][method] for r in at]),
                    _replicates(at, method, n_boot, seed + i)[1]))
    if not per:
        return None
    return boot_difference(float(np.mean([p[0] for p in per])), np.mean([p[1] for p in per], axis=0), level)
