"""Gradient-boosted regression trees, the zero-cost-augmented predictor the field runs: one setting,
used by the label-budget study (``zc trees``) and by ``autoprox fit --model zc-trees``.

scikit-learn's ``HistGradientBoostingRegressor`` fits them (well kept, already a dependency, exact on
a few hundred rows); ``as_trees`` reads its fitted trees into ``proxy.trees``' form and refuses, in one
line, a scikit-learn whose trees it cannot reproduce.
"""
from __future__ import annotations

import numpy as np

from autoprox.proxy import trees as treelib

SETTING = {"max_iter": 200, "learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 2}


def words() -> str:
    """The setting in a proxy file's description."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in SETTING.items())


def fit_trees(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """The boosted trees fitted on (x, y) (a scikit-learn regressor: ``.predict(x)``)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    return HistGradientBoostingRegressor(**SETTING, random_state=seed).fit(x, y)


def as_trees(model, x: np.ndarray) -> tuple[float, tuple[treelib.Tree, ...]]:
    """(baseline, trees) of a fitted ``fit_trees`` model: ``baseline + treelib.predict(trees, x)``
    equals ``model.predict(x)`` (checked on ``x``, the rows it was fitted on)."""
    try:
        baseline = float(np.ravel(model._baseline_prediction)[0])
        trees = tuple(_tree(p.nodes) for (p,) in model._predictors)
    except (AttributeError, TypeError, ValueError, KeyError) as e:
        raise ValueError(f"cannot read this scikit-learn's fitted trees ({type(e).__name__}: {e}); "
                         f"fit a zc-surrogate instead") from None
    mine = baseline + treelib.predict(trees, x)
    if not np.allclose(mine, model.predict(x), rtol=1e-9, atol=1e-12):
        raise ValueError("this scikit-learn's trees did not reproduce its own predictions; fit a zc-surrogate instead")
    return baseline, trees


def _tree(nodes) -> treelib.Tree:
    """scikit-learn's node records (numerical splits: ``x <= num_threshold`` goes left) as our nodes."""
    out = []
    for n in nodes:
        if n["is_leaf"]:
            out.append((float(n["value"]),))
        elif n["is_categorical"]:
            raise ValueError("a categorical split")
        else:
            out.append((int(n["feature_idx"]), float(n["num_threshold"]), int(n["left"]), int(n["right"])))
    return tuple(out)
