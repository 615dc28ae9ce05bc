"""What a user with labels would do instead of evolving a proxy: the alternatives a pick is judged
against, each chosen or fitted on training archs only and then scoring archs it never saw.

- ``best zoo``: the hand-designed zoo proxy with the best JCM on the training archs, oriented there;
- ``ranker``: ridge regression (closed form, numpy) of the targets' mean within-benchmark rank on
  the within-benchmark ranks of every hand-designed zoo score and arch scalar, its penalty chosen by
  5-fold cross-validation (Kendall tau) on the training archs; ranks are taken inside each
  benchmark's own archs, so it transfers to a benchmark without labels;
- ``params``, ``depth``, ``depth_width``: arch formulas (no fitting);
- ``surrogate``: the same ridge on a one-hot encoding of each arch's choices, layer by layer: the
  labelled upper reference; it transfers only to archs with the same fields as its training archs.

A benchmark's data is a ``Part``: the candidates' scores (zoo names and ``SCALARS``), the targets,
the archs. ``fit(train_parts)`` gives a ``Fitted``; ``Fitted.score(part)`` every alternative's
scores on a part, higher meaning better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import kendalltau, rankdata

from autoprox.eval.fitness import JcmVariant, jcm, orient
from autoprox.proxy.surrogate import one_hot, one_hot_fields
from autoprox.spaces.base import ARCH_SCALARS

SCALARS = ("num_params", "flops", *ARCH_SCALARS)  # arch scalars the ranker reads
FORMULAS = ("params", "depth", "depth_width")  # arch formulas, scored as they are
LEARNED = ("best zoo", "ranker", "surrogate")
NAMES = (*LEARNED[:2], *FORMULAS, LEARNED[2])  # in the order reports list them
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
INNER_FOLDS = 5


@dataclass(frozen=True)
class Part:
    """One benchmark's archs (or a subset): scores by name, targets, archs, all in the same order."""

    scores: Mapping[str, np.ndarray]
    targets: Mapping[str, np.ndarray]
    archs: Sequence[dict]

    def subset(self, idx: np.ndarray) -> "Part":
        return Part({k: np.asarray(v)[idx] for k, v in self.scores.items()},
                    {t: np.asarray(y)[idx] for t, y in self.targets.items()}, [self.archs[i] for i in idx])


def hand_designed(names: Sequence[str]) -> list[str]:
    """The zoo names the best-zoo choice and the ranker read: not an earlier discovery (``evolved_*``)
    and not a bare arch scalar."""
    return [n for n in names if not n.startswith("evolved_") and n not in SCALARS]


def within_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1] inside one benchmark's archs; non-finite values sit in the middle."""
    v = np.asarray(v, dtype=np.float64)
    out = np.full(len(v), 0.5)
    ok = np.isfinite(v)
    if ok.sum() > 1 and np.ptp(v[ok]) > 0:
        out[ok] = rankdata(v[ok]) / ok.sum()
    return out


def target_rank(part: Part) -> np.ndarray:
    """The mean over the targets of their within-benchmark ranks: what the regressions fit."""
    return np.mean([within_ranks(y) for y in part.targets.values()], axis=0)


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights (intercept last) of ridge regression on standardised columns, the intercept unpenalised."""
    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return np.append(w / sd, y.mean() - (mu / sd) @ w)


def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ w[:-1] + w[-1]


def choose_alpha(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """The penalty with the best mean Kendall tau over ``INNER_FOLDS`` folds of the training rows."""
    folds = np.random.default_rng(seed).permutation(len(y)) % INNER_FOLDS
    best, pick = -np.inf, ALPHAS[-1]
    for a in ALPHAS:
        taus = [kendalltau(predict(ridge(x[folds != f], y[folds != f], a), x[folds == f]), y[folds == f])[0]
                for f in range(INNER_FOLDS) if (folds == f).sum() > 1]
        m = float(np.nanmean(taus)) if taus and np.isfinite(taus).any() else -np.inf
        if m > best:
            best, pick = m, a
    return pick


def features(part: Part, names: Sequence[str]) -> np.ndarray:
    """(archs x names) within-benchmark ranks of the named scores."""
    return np.stack([within_ranks(part.scores[n]) for n in names], axis=1)


def _joint(parts: Sequence[Part], name: str, variant: JcmVariant) -> tuple[float, int]:
    """(mean JCM over parts, orientation from the summed tau) of one score on training parts."""
    taus = [jcm(p.scores[name], p.targets, variant, sign=1) for p in parts]
    sign = orient([f.jcm if f.valid else 0.0 for f in taus]) if variant == "mean_tau" else 1
    fits = [jcm(p.scores[name], p.targets, variant, sign=sign) for p in parts]
    return (float(np.mean([f.jcm for f in fits])) if all(f.valid for f in fits) else -np.inf), sign


@dataclass(frozen=True)
class Fitted:
    """The alternatives after seeing the training archs."""

    best: tuple[str, int]                # zoo name and its orientation
    ranker: tuple[tuple[str, ...], np.ndarray, float]  # inputs, weights, penalty
    surrogate: tuple[dict, np.ndarray, float] | None   # fields, weights, penalty

    def describe(self) -> dict[str, str]:
        """What each learned alternative became, in words, for a report."""
        inputs, _, a = self.ranker
        out = {"best zoo": f"`{self.best[0]}`" + (" (negated)" if self.best[1] < 0 else ""),
               "ranker": f"ridge (alpha {a:g}) on the ranks of {len(inputs)} zoo scores and arch scalars"}
        if self.surrogate is not None:
            out["surrogate"] = (f"ridge (alpha {self.surrogate[2]:g}) on {self.surrogate[1].size - 1} one-hot "
                                "columns of the arch's choices")
        return out

    def score(self, part: Part) -> dict[str, np.ndarray]:
        """Every alternative's scores on ``part`` (higher is better); the surrogate is left out
        where ``part``'s archs have fields its training archs did not."""
        name, sign = self.best
        inputs, w, _ = self.ranker
        out = {"best zoo": sign * np.asarray(part.scores[name], dtype=np.float64),
               "ranker": predict(w, features(part, inputs))}
        out |= {f: np.asarray(part.scores[f], dtype=np.float64) for f in FORMULAS}
        if self.surrogate is not None:
            fields, ws, _ = self.surrogate
            if {k for a in part.archs for k in a} <= {c[0] for c in fields}:
                out["surrogate"] = predict(ws, one_hot(part.archs, fields))
        return out


def fit(parts: Sequence[Part], variant: JcmVariant = "mean_tau", seed: int = 0) -> Fitted:
    """Choose the best zoo proxy and fit the ranker and the surrogate on ``parts`` (training archs
    of one or more benchmarks; the regressions pool their rows)."""
    zoo = [n for n in hand_designed(list(parts[0].scores)) if all(n in p.scores for p in parts)]
    if not zoo:
        raise ValueError("alternatives: no hand-designed zoo proxy was scored on the training archs")
    figs = {n: _joint(parts, n, variant) for n in zoo}
    best = max(zoo, key=lambda n: figs[n][0])
    inputs = tuple(n for n in (*zoo, *SCALARS) if all(n in p.scores for p in parts))
    x = np.concatenate([features(p, inputs) for p in parts])
    y = np.concatenate([target_rank(p) for p in parts])
    a = choose_alpha(x, y, seed)
    ranker = (inputs, ridge(x, y, a), a)
    fields = one_hot_fields([arch for p in parts for arch in p.archs])
    xs = np.concatenate([one_hot(p.archs, fields) for p in parts])
    b = choose_alpha(xs, y, seed)
    return Fitted((best, figs[best][1]), ranker, (fields, ridge(xs, y, b), b))


def jcm_of(scores: np.ndarray, targets: Mapping[str, np.ndarray], variant: JcmVariant = "mean_tau") -> float | None:
    """JCM of scores taken as they are (higher is better), or None where undefined."""
    f = jcm(scores, targets, variant, sign=1)
    return f.jcm if f.valid else None


def top_pick(scores: np.ndarray, targets: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per target, the accuracy of the arch ``scores`` ranks first and its regret to the best arch."""
    v = np.where(np.isfinite(scores), scores, -np.inf)
    i = int(np.argmax(v))
    return {t: float(y[i]) for t, y in targets.items()} | {
        f"{t}_regret": float(np.max(y) - y[i]) for t, y in targets.items()}
