"""``autoprox fit``: the ranker a user with a few trained archs fits on them, as a proxy file.

The ranker is ``alternatives``' ridge regression of the targets' mean within-benchmark rank on the
within-benchmark ranks of every hand-designed zoo proxy the chosen statistics passes can score and
of every arch scalar, its penalty chosen by 5-fold cross-validation on the labelled archs. As a proxy
it is a ``weighted_rank`` fused proxy: each input a part, its ridge weight applied to the part's rank
among the archs scored together, so ``bench``, ``search``, ``export`` and ``score_population`` take it
like any other proxy file.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from autoprox.data.benchmark import load_archs
from autoprox.eval import alternatives as alt
from autoprox.eval.bench import BenchConfig, score_bench
from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.graph import DATA_FREE, GraphProxy
from autoprox.proxy.zoo import get_proxy, list_proxies
from autoprox.stats.passes import families_of_passes

DEFAULT_PASSES = ("base", "features")


def ranker_inputs(passes: Sequence[str]) -> list[str]:
    """The zoo proxies (one graph each, not an earlier discovery) the passes' statistics score, then
    the arch scalars: the ranker's columns."""
    have = set(families_of_passes(list(passes))) | DATA_FREE
    zoo = [n for n in alt.hand_designed(list_proxies())
           if not get_proxy(n).fused and set(get_proxy(n).families) <= have]
    return [*zoo, *alt.SCALARS]


def ranker_proxy(inputs: Sequence[str], weights: np.ndarray, name: str, description: str) -> FusedProxy:
    """The fitted ranker as a ``weighted_rank`` proxy: one part per distinct input expression (inputs
    that are one expression, e.g. ``params`` and ``num_params``, add their weights)."""
    by_text: dict[str, float] = {}
    for n, w in zip(inputs, weights):
        text = str(get_proxy(n).parts[0].expr) if n not in alt.SCALARS else n
        by_text[text] = by_text.get(text, 0.0) + float(w)
    parts = tuple(GraphProxy.from_text(f"part{i}", t) for i, t in enumerate(by_text))
    return FusedProxy(name, parts, "weighted_rank", description, tuple(by_text.values()))


def fit_ranker(cfg: BenchConfig, passes: Sequence[str] = DEFAULT_PASSES, backend: str = "serial", workers: int = 2,
               **kw) -> tuple[FusedProxy, dict]:
    """Score the ranker's inputs on ``cfg``'s labelled archs and fit it there: (the proxy, what the
    fit saw: archs, targets, penalty, the inner cross-validated tau and the in-sample tau)."""
    inputs = ranker_inputs(passes)
    n = len(load_archs(cfg.space, cfg.bench, cfg.limit, cfg.targets, cfg.subset)[1])
    if n < 2 * alt.INNER_FOLDS:  # before any statistics are computed
        raise ValueError(f"fit needs at least {2 * alt.INNER_FOLDS} labelled archs (5 folds of 2), got {n}")
    names, by_name, bench, archs, targets = score_bench(replace(cfg, proxies=tuple(inputs)), backend, workers, **kw)
    # an input undefined on some labelled arch would leave that arch unranked (NaN) wherever the proxy scores it
    inputs = [n for n in inputs if np.isfinite(np.asarray(by_name[n], dtype=np.float64)).all()]
    part = alt.Part({k: np.asarray(v) for k, v in by_name.items()},
                    {t: bench.values(t)[:n] for t in targets}, archs)
    x, y = alt.features(part, inputs), alt.target_rank(part)
    alpha = alt.choose_alpha(x, y)
    w = alt.ridge(x, y, alpha)
    desc = (f"ridge ranker (alpha {alpha:g}) fitted on {n} labelled archs of {cfg.space} "
            f"({', '.join(targets)}) over the ranks of {len(inputs)} zoo scores and arch scalars")
    proxy = ranker_proxy(inputs, w[:-1], f"ranker-{cfg.space}", desc)
    fitted = proxy.combine(np.stack([np.asarray(by_name[_name_of(q, inputs)]) for q in proxy.parts]))
    in_sample = alt.jcm_of(fitted, part.targets)
    info = {"archs": n, "targets": list(targets), "alpha": alpha, "inputs": len(inputs),
            "cv_tau": _cv_tau(x, y, alpha), "in_sample": float("nan") if in_sample is None else in_sample}
    return proxy, info


def _name_of(part: GraphProxy, inputs: Sequence[str]) -> str:
    text = str(part.expr)
    return next(n for n in inputs if (n if n in alt.SCALARS else str(get_proxy(n).parts[0].expr)) == text)


def _cv_tau(x: np.ndarray, y: np.ndarray, alpha: float, seed: int = 0) -> float:
    """Mean Kendall tau of the ranker on held-out folds of the labelled archs, at ``alpha`` (chosen on
    these same folds: an optimistic figure)."""
    from scipy.stats import kendalltau
    folds = np.random.default_rng(seed).permutation(len(y)) % alt.INNER_FOLDS
    taus = [kendalltau(alt.predict(alt.ridge(x[folds != f], y[folds != f], alpha), x[folds == f]), y[folds == f])[0]
            for f in range(alt.INNER_FOLDS)]
    return float(np.nanmean(taus))
