"""How sure a correlation is: bootstrap intervals over archs, paired differences, the oracle
ceiling, and correlation beyond model size. numpy/scipy only; every random draw is seeded.

*Bootstrap.* One resample draws n archs with replacement; it is held as a count vector ``w``
(arch i drawn ``w[i]`` times; a ``(n_boot, n)`` matrix from ``resample_weights``). Kendall
tau-b of the resampled archs is computed from the counts without materialising them: with
``S[i, j] = sign(x_i - x_j)`` and ``T`` likewise for y, a pair of draws of the same arch is a
tie in both, so ``tau_b = w'(S*T)w / sqrt(w'|S|w * w'|T|w)`` (equals scipy's tau-b when every
``w`` is 1). Intervals are percentile intervals (default 95%); resamples where tau is undefined
(all draws tied) are dropped. A JCM is oriented once, on all archs (as ``fitness.jcm``), and the
same sign is used in every resample. ``statistic_ci`` gives the same percentile interval for any
statistic of the archs computed from a count vector (e.g. the regret of a search's pick).

*Paired difference* of two proxies' JCM: both are recomputed on the same resamples, so the
arch-to-arch variation they share cancels (paired bootstrap). Its p-value is two-sided,
``2 * min(P(d <= 0), P(d >= 0))`` over the resamples with a +1 correction, capped at 1: the
smallest level at which the percentile interval of the difference excludes 0. A proxy against
itself has difference 0 in every resample and p = 1.

*Ceiling*: an oracle that scores each arch by the sum of its ranks over the targets themselves
(average ranks for ties); its JCM is what one score per arch can reach against these targets.
``headroom`` = (JCM - JCM_params) / (ceiling - JCM_params).

*Beyond size*: the partial Kendall tau of proxy and target given #params,
``(t_xy - t_xz t_yz) / sqrt((1 - t_xz^2)(1 - t_yz^2))`` (tau-b throughout), averaged over the
targets with the proxy's orientation. 0: the proxy ranks archs no better than its own agreement
with size explains; undefined (NaN) for a proxy that ranks exactly as #params does. Chosen over
the mean tau within #params quantile bins, which credits #params itself (and FLOPs, which rank
AutoFormer's archs exactly as #params) with a positive figure from the size left inside a bin.
Read it beside the JCM: it grows as the proxy's tau with #params nears 1 (the denominator), and
the oracle's own figure (reported with the ceiling) is its reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from autoprox.eval.fitness import JcmVariant, invalid_reason, orient

N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    estimate: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Difference:
    """JCM(a) - JCM(b) on the same archs, its interval, p-value and verdict."""

    estimate: float
    lo: float
    hi: float
    p: float

    @property
    def verdict(self) -> str:
        """'yes' if the interval lies above 0, 'no' if below, else 'not significant'."""
        if not np.isfinite(self.lo):
            return "undefined"
        return "yes" if self.lo > 0 else "no" if self.hi < 0 else "not significant"


NAN_INTERVAL = Interval(float("nan"), float("nan"), float("nan"))


def resample_weights(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` draw counts of n archs resampled with replacement."""
    if n < 2 or n_boot < 1:
        raise ValueError(f"bootstrap needs n >= 2 archs and n_boot >= 1, got n={n}, n_boot={n_boot}")
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _signs(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v[:, None] - v[None, :])


def _quad(w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``w_b' m w_b`` for every row b of ``w``."""
    return np.einsum("bi,bi->b", w @ m, w)


def boot_kendall(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Kendall tau-b of (x, y) on every resample (NaN where undefined)."""
    sx, sy = _signs(x), _signs(y)
    den = np.sqrt(_quad(weights, np.abs(sx)) * _quad(weights, np.abs(sy)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, _quad(weights, sx * sy) / np.where(den > 0, den, 1.0), np.nan)


def _interval(estimate: float, boot: np.ndarray, level: float) -> Interval:
    boot = boot[np.isfinite(boot)]
    if not np.isfinite(estimate) or boot.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"))
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [a, 100 - a])
    return Interval(float(estimate), float(lo), float(hi))


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    if invalid_reason(x) or invalid_reason(y):
        return float("nan")
    return float(sps.kendalltau(x, y).statistic)


def statistic_ci(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = LEVEL, weights: np.ndarray | None = None) -> Interval:
    """``stat(w)`` of n archs and its bootstrap percentile interval: ``w`` is a draw-count vector
    (all ones: the sample itself; then one row of ``weights`` per resample); NaN resamples are dropped."""
    w = resample_weights(n, n_boot, seed) if weights is None else weights
    return _interval(float(stat(np.ones(n))), np.array([stat(row) for row in w], dtype=np.float64), level)


def kendall_ci(x: np.ndarray, y: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
               level: float = LEVEL, weights: np.ndarray | None = None) -> Interval:
    """Kendall tau-b of (x, y) and its bootstrap interval over archs."""
    w = resample_weights(len(x), n_boot, seed) if weights is None else weights
    return _interval(_tau(x, y), boot_kendall(x, y, w), level)


def orientation(scores: np.ndarray, targets: Mapping[str, np.ndarray]) -> int:
    """The sign ``fitness.jcm`` orients a proxy with: -1 if its mean tau is negative."""
    return orient([np.mean([_tau(scores, t) for t in targets.values()])])


def boot_jcm(scores: np.ndarray, targets: Mapping[str, np.ndarray], weights: np.ndarray,
             variant: JcmVariant = "mean_tau", sign: int | None = None) -> tuple[float, np.ndarray]:
    """(JCM on all archs, JCM on every resample), oriented once on all archs."""
    taus = np.array([_tau(scores, t) for t in targets.values()])
    boots = np.stack([boot_kendall(scores, t, weights) for t in targets.values()])
    if variant == "mean_abs_tau":
        return float(np.mean(np.abs(taus))), np.mean(np.abs(boots), axis=0)
    s = orient([taus.mean()]) if sign is None else sign
    return float(s * taus.mean()), s * boots.mean(axis=0)


def jcm_ci(scores: np.ndarray, targets: Mapping[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0,
           level: float = LEVEL, variant: JcmVariant = "mean_tau", weights: np.ndarray | None = None,
           sign: int | None = None) -> Interval:
    """JCM of ``scores`` over ``targets`` (oriented by ``sign``, default: on these archs) and
    its bootstrap interval over archs."""
    if invalid_reason(scores):
        return NAN_INTERVAL
    w = resample_weights(len(scores), n_boot, seed) if weights is None else weights
    return _interval(*boot_jcm(scores, targets, w, variant, sign), level)


def paired_difference(a: np.ndarray, b: np.ndarray, targets: Mapping[str, np.ndarray],
                      n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                      variant: JcmVariant = "mean_tau", weights: np.ndarray | None = None) -> Difference:
    """JCM(a) - JCM(b) on the same archs, with a paired-bootstrap interval and p-value."""
    if invalid_reason(a) or invalid_reason(b):
        return Difference(*(float("nan"),) * 4)
    w = resample_weights(len(a), n_boot, seed) if weights is None else weights
    ja, ba = boot_jcm(a, targets, w, variant)
    jb, bb = boot_jcm(b, targets, w, variant)
    return boot_difference(ja - jb, ba - bb, level)


def pooled(parts: Sequence[tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]], signs: tuple[int, int] = (1, 1),
           n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
           variant: JcmVariant = "mean_tau", space_weights: Sequence[float] | None = None
           ) -> tuple[Interval, Difference]:
    """A JCM averaged over spaces (as ``evolve`` reports a fold, weighted by ``space_weights``, one
    per part, as ``objective.weights``): ``parts`` holds per space the scores of proxies a and b
    and the targets. Each space's archs are resampled on their own (seed + i); returns a's JCM
    with its interval and JCM(a) - JCM(b), both proxies oriented by the given ``signs`` (e.g.
    their training-fold orientation)."""
    iv_a, _, diff = pooled_pair(parts, signs, n_boot, seed, level, variant, space_weights)
    return iv_a, diff


def pooled_pair(parts: Sequence[tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]],
                signs: tuple[int, int] = (1, 1), n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                variant: JcmVariant = "mean_tau", space_weights: Sequence[float] | None = None
                ) -> tuple[Interval, Interval, Difference]:
    """``pooled``, with b's interval from the same resamples: (a's, b's, JCM(a) - JCM(b))."""
    ja, jb, ba, bb = [], [], [], []
    for i, (a, b, targets) in enumerate(parts):
        if invalid_reason(a) or invalid_reason(b):
            return NAN_INTERVAL, NAN_INTERVAL, Difference(*(float("nan"),) * 4)
        w = resample_weights(len(a), n_boot, seed + i)
        for j, bo, s, sg in ((ja, ba, a, signs[0]), (jb, bb, b, signs[1])):
            est, boot = boot_jcm(s, targets, w, variant, sg)
            j.append(est)
            bo.append(boot)
    sw = None if space_weights is None else np.asarray(space_weights, dtype=float)
    a_boot, b_boot = np.average(ba, axis=0, weights=sw), np.average(bb, axis=0, weights=sw)
    a, b = float(np.average(ja, weights=sw)), float(np.average(jb, weights=sw))
    return _interval(a, a_boot, level), _interval(b, b_boot, level), boot_difference(a - b, a_boot - b_boot, level)


def boot_difference(estimate: float, d: np.ndarray, level: float) -> Difference:
    """A difference's estimate, its percentile interval from bootstrap draws ``d`` (NaNs dropped)
    and the two-sided bootstrap p-value of "no difference"."""
    d = d[np.isfinite(d)]
    ci = _interval(estimate, d, level)
    k = d.size
    p = min(1.0, 2 * min((1 + np.sum(d <= 0)) / (k + 1), (1 + np.sum(d >= 0)) / (k + 1)))
    return Difference(ci.estimate, ci.lo, ci.hi, float(p))


def oracle_scores(targets: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each arch's sum of ranks over the targets (average ranks for ties)."""
    return np.sum([sps.rankdata(t) for t in targets.values()], axis=0)


def ceiling_ci(targets: Mapping[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
               variant: JcmVariant = "mean_tau", weights: np.ndarray | None = None) -> Interval:
    """JCM of the rank-sum oracle, and its bootstrap interval over archs."""
    return jcm_ci(oracle_scores(targets), targets, n_boot, seed, level, variant, weights)


def headroom(jcm: float, jcm_params: float, ceiling: float) -> float:
    """Fraction of the gap from #params to the oracle ceiling that a JCM closes."""
    gap = ceiling - jcm_params
    return float((jcm - jcm_params) / gap) if gap != 0 else float("nan")


def _partial(txy: np.ndarray, txz: np.ndarray, tyz: np.ndarray) -> np.ndarray:
    """NaN where |tau| with z is 1 up to rounding (scipy's tau of x with itself can be 1 - 2e-16)."""
    ok = (1 - np.abs(txz) > 1e-9) & (1 - np.abs(tyz) > 1e-9)
    den = np.sqrt(np.where(ok, (1 - txz ** 2) * (1 - tyz ** 2), 1.0))
    return np.where(ok, (txy - txz * tyz) / den, np.nan)


def partial_kendall(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Partial Kendall tau-b of x and y given z (NaN if x or y ranks exactly as z)."""
    return float(_partial(np.float64(_tau(x, y)), np.float64(_tau(x, z)), np.float64(_tau(y, z))))


def beyond_size_ci(scores: np.ndarray, targets: Mapping[str, np.ndarray], size: np.ndarray,
                   n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                   weights: np.ndarray | None = None) -> Interval:
    """Mean over targets of the partial tau of (oriented proxy, target) given ``size``,
    with its bootstrap interval over archs."""
    if invalid_reason(scores):
        return NAN_INTERVAL
    w = resample_weights(len(scores), n_boot, seed) if weights is None else weights
    s = orientation(scores, targets) * np.asarray(scores, dtype=np.float64)
    bxz = boot_kendall(s, size, w)
    est, boot = [], []
    for t in targets.values():
        est.append(partial_kendall(s, t, size))
        boot.append(_partial(boot_kendall(s, t, w), bxz, boot_kendall(t, size, w)))
    return _interval(float(np.mean(est)), np.mean(boot, axis=0), level)


def summarise(names: Sequence[str], scores: np.ndarray, targets: Mapping[str, np.ndarray], size: np.ndarray,
              references: Mapping[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0,
              level: float = LEVEL, variant: JcmVariant = "mean_tau") -> dict:
    """Every figure of a bench on one set of resamples: per proxy its JCM interval, paired
    differences vs each reference proxy, headroom (vs the ``params`` reference, if given) and
    the beyond-size partial tau; and the ceiling (with the oracle's own beyond-size figure)."""
    w = resample_weights(scores.shape[1], n_boot, seed)
    ceil = ceiling_ci(targets, weights=w, level=level, variant=variant)
    jp = jcm_ci(references["params"], targets, weights=w, level=level, variant=variant).estimate \
        if "params" in references else float("nan")
    per = {}
    for name, s in zip(names, scores):
        j = jcm_ci(s, targets, weights=w, level=level, variant=variant)
        per[name] = {"jcm": j, "headroom": headroom(j.estimate, jp, ceil.estimate),
                     "beyond_size": beyond_size_ci(s, targets, size, weights=w, level=level),
                     "diff": {r: paired_difference(s, ref, targets, weights=w, level=level, variant=variant)
                              for r, ref in references.items() if r != name}}
    oracle_beyond = beyond_size_ci(oracle_scores(targets), targets, size, weights=w, level=level)
    return {"ceiling": ceil, "jcm_params": jp, "ceiling_beyond_size": oracle_beyond, "proxies": per, "n_boot": n_boot, "seed": seed,
            "level": level, "weights": w}
