"""Correlation of proxy scores with accuracies, and the joint correlation metric.

This module is the one place that decides whether scores are usable: NaN, inf or
all-equal scores make a proxy invalid (fitness ``INVALID``); nothing else checks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np
from scipy import stats as sps

INVALID = -1.0
JcmVariant = Literal["mean_tau", "mean_abs_tau"]


def invalid_reason(scores: Sequence[float] | np.ndarray) -> str | None:
    """Why ``scores`` cannot be ranked, or None if they can."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 2:
        return "fewer than two scores"
    if not np.all(np.isfinite(s)):
        return f"{int(np.sum(~np.isfinite(s)))} non-finite score(s)"
    if np.all(s == s[0]):
        return "all scores equal"
    return None


def correlations(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Kendall tau-b, Spearman rho and Pearson r (NaN where undefined)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if invalid_reason(s) or invalid_reason(t):
        return {"kendall": float("nan"), "spearman": float("nan"), "pearson": float("nan")}
    return {
        "kendall": float(sps.kendalltau(s, t).statistic),
        "spearman": float(sps.spearmanr(s, t).statistic),
        "pearson": float(sps.pearsonr(s, t).statistic),
    }


@dataclass(frozen=True)
class Fitness:
    """JCM of one proxy, its orientation and the per-dataset correlations."""

    jcm: float
    sign: int = 1
    per_target: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


def orient(mean_taus: Sequence[float], weights: Sequence[float] | None = None) -> int:
    """The one orientation rule of a proxy: -1 when the (weighted) sum of its mean Kendall taus, one
    per benchmark, is negative, else 1. ``jcm``, the bootstrap, the objective and the alternatives use it."""
    w = np.ones(len(mean_taus)) if weights is None else np.asarray(weights, dtype=np.float64)
    return -1 if float(np.dot(np.asarray(mean_taus, dtype=np.float64), w)) < 0 else 1


def jcm(scores: np.ndarray, targets: Mapping[str, np.ndarray],
        variant: JcmVariant = "mean_tau", sign: int | None = None) -> Fitness:
    """Joint correlation metric over ``targets`` (name -> accuracies).

    ``mean_tau``: the proxy is oriented once (negated if its mean Kendall tau is
    negative, or by the given ``sign``) and the mean tau is returned.
    ``mean_abs_tau``: the Auto-Prox variant, mean of |tau| per dataset.
    """
    if not targets:
        raise ValueError("jcm needs at least one target")
    reason = invalid_reason(scores)
    if reason:
        return Fitness(INVALID, 1, {}, reason)
    per = {name: correlations(scores, t) for name, t in targets.items()}
    taus = np.array([c["kendall"] for c in per.values()])
    if not np.all(np.isfinite(taus)):
        return Fitness(INVALID, 1, per, "undefined correlation")
    if variant == "mean_abs_tau":
        return Fitness(float(np.mean(np.abs(taus))), 1, per)
    if variant != "mean_tau":
        raise ValueError(f"unknown JCM variant {variant!r}; use mean_tau or mean_abs_tau")
    if sign is None:
        sign = orient([taus.mean()])
    oriented = {n: {k: sign * v for k, v in c.items()} for n, c in per.items()}
    return Fitness(float(sign * taus.mean()), sign, oriented)
