"""``autoprox fit``: what a user with a few trained archs fits on them, as a proxy file.

Three models, each a ridge regression of the targets' mean within-benchmark rank, its penalty chosen
by 5-fold cross-validation on the labelled archs (``alternatives``):

- ``ranker``: on the within-benchmark ranks of every hand-designed zoo proxy the chosen statistics
  passes can score and of every arch scalar; as a proxy, a ``weighted_rank`` fused proxy (each input
  a part, its weight applied to the part's rank among the archs scored together);
- ``surrogate``: on the one-hot encoding of each arch's choices, layer by layer; as a proxy, an
  ``ArchSurrogate`` that reads the arch alone (no statistics, one score per arch);
- ``zc-surrogate``: on both the one-hot encoding and the zoo proxies' ranks; an ``ArchSurrogate``
  with the zoo proxies as weighted-rank parts;
- ``zc-trees``: gradient-boosted trees (``boosting``) on the same inputs as ``zc-surrogate``; an
  ``ArchSurrogate`` whose trees read its columns and parts (no penalty: ``alpha`` is reported as 0).

``bench``, ``search``, ``export`` and ``score_population`` take each like any other proxy file.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from autoprox.data.benchmark import load_archs
from autoprox.eval import alternatives as alt
from autoprox.eval.bench import BenchConfig, score_bench
from autoprox.eval.boosting import as_trees, fit_trees, words as boosting_words
from autoprox.proxy.fuse import FusedProxy
from autoprox.proxy.graph import DATA_FREE, GraphProxy
from autoprox.proxy.surrogate import ArchSurrogate, columns_of, one_hot, one_hot_fields
from autoprox.proxy.zoo import get_proxy, list_proxies
from autoprox.stats.passes import families_of_passes

DEFAULT_PASSES = ("base", "features")
MODELS = ("ranker", "surrogate", "zc-surrogate", "zc-trees")


def ranker_inputs(passes: Sequence[str]) -> list[str]:
    """The zoo proxies (one graph each, not an earlier discovery) the passes' statistics score, then
    the arch scalars: the ranker's columns."""
    have = set(families_of_passes(list(passes))) | DATA_FREE
    zoo = [n for n in alt.hand_designed(list_proxies())
           if not get_proxy(n).fused and set(get_proxy(n).families) <= have]
    return [*zoo, *alt.SCALARS]


def _expression(name: str) -> str:
    return name if name in alt.SCALARS else str(get_proxy(name).parts[0].expr)


def by_expression(inputs: Sequence[str], weights: np.ndarray) -> dict[str, tuple[float, str]]:
    """Expression -> (summed weight, first input name) of the inputs: inputs that are one expression
    (e.g. ``params`` and ``num_params``) add their weights."""
    out: dict[str, tuple[float, str]] = {}
    for n, w in zip(inputs, weights):
        t = _expression(n)
        out[t] = (out.get(t, (0.0, n))[0] + float(w), out.get(t, (0.0, n))[1])
    return out


def ranker_proxy(inputs: Sequence[str], weights: np.ndarray, name: str, description: str) -> FusedProxy:
    """The fitted ranker as a ``weighted_rank`` proxy: one part per distinct input expression."""
    by = by_expression(inputs, weights)
    parts = tuple(GraphProxy.from_text(f"part{i}", t) for i, t in enumerate(by))
    return FusedProxy(name, parts, "weighted_rank", description, tuple(w for w, _ in by.values()))


def fit_proxy(cfg: BenchConfig, model: str = "ranker", passes: Sequence[str] = DEFAULT_PASSES,
              backend: str = "serial", workers: int = 2, name: str | None = None,
              **kw) -> tuple[FusedProxy | ArchSurrogate, dict]:
    """Fit ``model`` on ``cfg``'s labelled archs: (the proxy, named ``name`` (default
    ``<model>-<space>``), and what the fit saw: archs, targets, penalty, inputs, the inner
    cross-validated tau and the proxy's in-sample JCM)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    bench, archs, targets = load_archs(cfg.space, cfg.bench, cfg.limit, cfg.targets, cfg.subset)
    n = len(archs)
    if n < 2 * alt.INNER_FOLDS:  # before any statistics are computed
        raise ValueError(f"fit needs at least {2 * alt.INNER_FOLDS} labelled archs (5 folds of 2), got {n}")
    for t in targets:
        if np.ptp(bench.values(t)[:n]) == 0:
            raise ValueError(f"cannot fit: every labelled arch has the same {t} accuracy")
    zoo = ranker_inputs(passes) if model == "ranker" else [
        i for i in ranker_inputs(passes) if i not in alt.SCALARS] if model.startswith("zc-") else []
    by_name: dict = {}
    if zoo:
        _, by_name, bench, archs, targets = score_bench(replace(cfg, proxies=tuple(zoo)), backend, workers, **kw)
        # an input undefined on some labelled arch would leave that arch unranked (NaN) wherever it scores
        zoo = [i for i in zoo if np.isfinite(np.asarray(by_name[i], dtype=np.float64)).all()]
    part = alt.Part({k: np.asarray(v) for k, v in by_name.items()}, {t: bench.values(t)[:n] for t in targets}, archs)
    fields = one_hot_fields(archs) if model != "ranker" else {}
    x = np.concatenate([one_hot(archs, fields), alt.features(part, zoo) if zoo else np.zeros((n, 0))], axis=1)
    y = alt.target_rank(part)
    zc = f"the one-hot encoding of each arch's choices and the ranks of {len(zoo)} zoo scores"
    what = {"ranker": f"the ranks of {len(zoo)} zoo scores and arch scalars",
            "surrogate": "the one-hot encoding of each arch's choices", "zc-surrogate": zc, "zc-trees": zc}[model]
    where = f"fitted on {n} labelled archs of {cfg.space} ({', '.join(targets)}) over {what}"
    name = name or f"{model}-{cfg.space}"
    if model == "zc-trees":
        alpha, trees = 0.0, fit_trees(x, y)
        proxy = _as_tree_proxy(name, f"boosted trees ({boosting_words()}) {where}", columns_of(fields), zoo,
                               *as_trees(trees, x), cfg.space)
    else:
        alpha = alt.choose_alpha(x, y)
        proxy = _as_proxy(model, name, f"ridge {model} (alpha {alpha:g}) {where}", columns_of(fields), zoo,
                          alt.ridge(x, y, alpha), cfg.space)
    by = by_expression(zoo, np.zeros(len(zoo)))
    matrix = np.array([by_name[by[str(q.expr)][1]] for q in proxy.parts], dtype=np.float64).reshape(len(proxy.parts), n)
    fitted = proxy.combine(matrix, archs)
    in_sample = alt.jcm_of(fitted, part.targets)
    info = {"archs": n, "targets": list(targets), "alpha": alpha, "inputs": x.shape[1], "model": model,
            "cv_tau": _cv_tau(x, y, alpha, trees=model == "zc-trees"), "in_sample": float("nan") if in_sample is None else in_sample}
    return proxy, info


def _as_proxy(model: str, name: str, desc: str, columns: list, zoo: list[str],
              w: np.ndarray, space: str) -> FusedProxy | ArchSurrogate:
    """The ridge weights ``w`` (one-hot columns, then zoo ranks, intercept last) as a proxy."""
    if model == "ranker":
        return ranker_proxy(zoo, w[:-1], name, desc)
    w_cols, w_zoo = w[:len(columns)], w[len(columns):-1]
    keep = [i for i, v in enumerate(w_cols) if v != 0]  # a column constant on the labelled archs adds nothing
    by = {t: v for t, (v, _) in by_expression(zoo, w_zoo).items() if v != 0}  # likewise a constant part
    return ArchSurrogate(name, tuple(columns[i] for i in keep), tuple(float(w_cols[i]) for i in keep), float(w[-1]),
                         tuple(GraphProxy.from_text(f"part{i}", t) for i, t in enumerate(by)), tuple(by.values()), desc,
                         space)


def _cv_tau(x: np.ndarray, y: np.ndarray, alpha: float, seed: int = 0, trees: bool = False) -> float:
    """Mean Kendall tau of the model on held-out folds of the labelled archs, at ``alpha`` (chosen on
    these same folds: an optimistic figure) or, with ``trees``, of the boosted trees."""
    from scipy.stats import kendalltau
    folds = np.random.default_rng(seed).permutation(len(y)) % alt.INNER_FOLDS

    def predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        return fit_trees(x[tr], y[tr]).predict(x[te]) if trees else alt.predict(alt.ridge(x[tr], y[tr], alpha), x[te])
    taus = [kendalltau(predict(folds != f, folds == f), y[folds == f])[0] for f in range(alt.INNER_FOLDS)]
    return float(np.nanmean(taus))


def _as_tree_proxy(name: str, desc: str, columns: list, zoo: list[str], baseline: float,
                   trees: tuple, space: str) -> ArchSurrogate:
    """Boosted trees over (one-hot columns, then zoo ranks) as a surrogate that keeps only the
    columns and parts some tree splits on (inputs of one expression become one part)."""
    used = sorted({n[0] for t in trees for n in t if len(n) == 4})
    if not used:
        raise ValueError("the boosted trees found nothing to split on: the labelled archs are too few or too alike")
    exprs = list(dict.fromkeys(_expression(zoo[i - len(columns)]) for i in used if i >= len(columns)))
    cols = [i for i in used if i < len(columns)]
    new = {i: cols.index(i) for i in cols} | {
        i: len(cols) + exprs.index(_expression(zoo[i - len(columns)])) for i in used if i >= len(columns)}
    moved = tuple(tuple(n if len(n) == 1 else (new[n[0]], *n[1:]) for n in t) for t in trees)
    return ArchSurrogate(name, tuple(columns[i] for i in cols), (0.0,) * len(cols), baseline,
                         tuple(GraphProxy.from_text(f"part{i}", t) for i, t in enumerate(exprs)), (0.0,) * len(exprs),
                         desc, space, moved)
