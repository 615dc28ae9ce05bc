"""Bootstrap intervals of the bench-only regret table on a known six-arch pool."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from autoprox.eval.uncertainty import resample_weights
from autoprox.archsearch.report import REGRET_COLUMNS, regret_markdown, regret_rows

ACC = np.array([70.0, 74.0, 71.0, 76.0, 72.0, 73.0])  # bench records 0-5; record 3 is the best
GOOD = [0.1, 0.5, 0.2, 0.9, 0.3, 0.4]  # ranks the archs exactly as ACC
NOISY = [0.1, 0.9, 0.3, 0.5, 0.2, 0.4]  # picks record 1 (74.0): regret 2


class Bench:
    """The one method regret_rows reads: accuracies of a target, optionally a subset."""

    def values(self, target: str, idx=None) -> np.ndarray:
        v = ACC if target == "a" else -ACC
        return v if idx is None else v[idx]


def rows(scores, targets=("a",), **kw) -> list[dict]:
    hist = [{"index": i, "bench_index": i, "score": s} for i, s in enumerate(scores)]
    return regret_rows("p", "pit", hist, Bench(), targets, **kw)


def brute_regret_interval(scores, n_boot: int, seed: int, minimize: bool = False) -> tuple[float, float]:
    """Materialise every resample, pick its best-scoring drawn arch (first index of ties), percentiles."""
    regs = []
    for w in resample_weights(6, n_boot, seed):
        drawn = [i for i in range(6) if w[i] > 0]
        finite = [i for i in drawn if math.isfinite(scores[i])]
        if finite:
            pick = min(finite, key=lambda i: (scores[i] if minimize else -scores[i], i))
            regs.append(max(ACC[drawn]) - ACC[pick])
    lo, hi = np.percentile(regs, [2.5, 97.5])
    return float(lo), float(hi)


def test_kendall_equals_scipy_and_interval_is_seeded():
    r = rows(NOISY, n_boot=500, seed=3)[0]
    assert r["kendall"] == pytest.approx(sps.kendalltau(NOISY, ACC).statistic, abs=1e-12)
    assert r["kendall_lo"] <= r["kendall"] <= r["kendall_hi"] and r["kendall_lo"] < r["kendall_hi"]
    assert r["regret"] == pytest.approx(2.0) and r["pick"] == 1 and r["rank"] == 2 and r["n_boot"] == 500
    assert (r["regret_lo"], r["regret_hi"]) == pytest.approx(brute_regret_interval(NOISY, 500, 3))
    assert r["regret_lo"] <= r["regret"] <= r["regret_hi"]
    assert rows(NOISY, n_boot=500, seed=3)[0] == r  # same seed, same numbers
    assert rows(NOISY, n_boot=500, seed=4)[0]["kendall_lo"] != r["kendall_lo"]
    assert set(r) == set(REGRET_COLUMNS)


def test_perfect_proxy_has_zero_regret_in_every_resample_and_reversed_has_positive():
    perfect = rows(GOOD)[0]
    assert (perfect["regret"], perfect["regret_lo"], perfect["regret_hi"]) == (0.0, 0.0, 0.0)
    assert (perfect["kendall"], perfect["kendall_lo"], perfect["kendall_hi"]) == pytest.approx((1.0, 1.0, 1.0))
    reversed_ = rows([-s for s in GOOD])[0]
    assert reversed_["pick"] == 0 and reversed_["regret"] == 6.0 and reversed_["regret_hi"] > 0
    assert reversed_["kendall"] == pytest.approx(-1.0)
    minimized = rows([-s for s in GOOD], minimize=True)[0]  # the search's direction decides the pick
    assert (minimized["regret"], minimized["regret_lo"], minimized["regret_hi"]) == (0.0, 0.0, 0.0)
    # tau of the score as the search reads it: a perfect proxy searched downwards has tau +1, not -1
    assert (minimized["kendall"], minimized["kendall_lo"], minimized["kendall_hi"]) == pytest.approx((1.0, 1.0, 1.0))
    other = rows(GOOD, targets=("a", "b"))[1]  # target b = -ACC: the perfect proxy picks its worst arch
    assert other["regret"] == 6.0 and other["kendall"] == pytest.approx(-1.0)


def test_nan_scores_are_never_picked_and_tau_uses_the_finite_ones():
    scores = [0.1, 0.5, 0.3, math.nan, 0.2, 0.4]  # the best arch has no score: it can only cost
    r = rows(scores, n_boot=300, seed=0)[0]
    assert r["pick"] == 1 and r["regret"] == 2.0 and r["n"] == 6
    f = [i for i in range(6) if math.isfinite(scores[i])]
    assert r["kendall"] == pytest.approx(sps.kendalltau(np.array(scores)[f], ACC[f]).statistic, abs=1e-12)
    assert (r["regret_lo"], r["regret_hi"]) == pytest.approx(brute_regret_interval(scores, 300, 0))
    none = rows([math.nan] * 6)[0]
    assert none["pick"] is None and math.isnan(none["regret"]) and math.isnan(none["kendall_lo"])
    assert "| p | pit | a | 6 | - | nan | - | nan | nan | nan |" in regret_markdown([none])


def test_markdown_shows_intervals_and_says_how_they_are_computed():
    md = regret_markdown(rows(NOISY, n_boot=200) + rows(GOOD, n_boot=200))
    head, _, first, second, _, foot = md.split("\n")
    assert head.endswith("| best acc | regret [95% CI] | τ [95% CI] |")
    r = rows(NOISY, n_boot=200)[0]
    assert first == (f"| p | pit | a | 6 | 1 | 74.00 | 2 | 76.00 | 2.00 [{r['regret_lo']:.2f}, {r['regret_hi']:.2f}] "
                     f"| {r['kendall']:.2f} [{r['kendall_lo']:.2f}, {r['kendall_hi']:.2f}] |")
    assert second.endswith("| 0.00 [0.00, 0.00] | 1.00 [1.00, 1.00] |")
    assert foot.startswith("Intervals: 95% bootstrap percentile intervals over the n archs (200 resamples")
