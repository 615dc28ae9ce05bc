"""Boosted trees as a proxy file: ``autoprox fit --model zc-trees`` writes an arch surrogate whose
trees bench, search, export and the Python API evaluate exactly as scikit-learn predicts."""
import numpy as np
import pytest

from autoprox.archsearch.config import SearchConfig
from autoprox.archsearch.run import search
from autoprox.cli.main import main
from autoprox.eval.bench import BenchConfig, score_bench
from autoprox.eval.boosting import as_trees, fit_trees
from autoprox.eval.fit import fit_proxy
from autoprox.proxy import trees as treelib
from autoprox.proxy.export import export, load_proxy
from autoprox.proxy.graph import GraphError, GraphProxy
from autoprox.proxy.surrogate import ArchSurrogate
from tests.test_surrogate import _labelled, zc_inputs

ARCHS = [{"d": 12, "e": [192]}, {"d": 13, "e": [216]}, {"d": 14, "e": [192]}, {"d": 13, "e": [192]}]
COLS = (("d", None, 13), ("e", 0, 192))
PART = GraphProxy.from_text("p", "num_params")
# tree 0: [d = 13] <= 0.5 ? (rank(num_params) <= 0.5 ? 1 : 2) : 10;  tree 1: [e[0] = 192] <= 0.5 ? -1 : 0.25
TREES = (((0, 0.5, 1, 4), (2, 0.5, 2, 3), (1.0,), (2.0,), (10.0,)), ((1, 0.5, 1, 2), (-1.0,), (0.25,)))


def _surrogate(cols=COLS, trees=TREES, **kw) -> ArchSurrogate:
    return ArchSurrogate("t", cols, (0.0,) * len(cols), 0.5, (PART,), (0.0,), trees=trees, **kw)


def test_trees_add_the_leaves_each_arch_reaches():
    s = _surrogate()
    m = np.array([[40.0, 10.0, 30.0, 20.0]])  # ranks / n of num_params: 1, 0.25, 0.75, 0.5
    # arch 0: d=12 (col 0 is 0), rank 1 > 0.5 -> 2; e=192 -> 0.25;  arch 1: d=13 -> 10; e=216 -> -1
    # arch 2: d=14, rank 0.75 -> 2; 0.25;  arch 3: d=13 -> 10; e=192 -> 0.25
    assert list(s.combine(m, ARCHS)) == [0.5 + 2 + 0.25, 0.5 + 10 - 1, 0.5 + 2 + 0.25, 0.5 + 10 + 0.25]
    assert list(s.negated().combine(m, ARCHS)) == [-2.75, -9.5, -2.75, -10.75]
    m[0, 2] = np.nan  # an arch with a NaN part has no score; the others are ranked among themselves
    out = s.combine(m, ARCHS)
    assert np.isnan(out[2]) and list(out[[0, 1, 3]]) == [2.75, 9.5, 10.75]
    assert s.fused and "trees(2 of depth <= 2 over the columns and parts)" in s.formula()


def test_tree_inputs_follow_the_columns_into_their_one_order():
    swapped = tuple(tuple(n if len(n) == 1 else ({0: 1, 1: 0}.get(n[0], n[0]), *n[1:]) for n in t) for t in TREES)
    a, b = _surrogate(), _surrogate(cols=COLS[::-1], trees=swapped)
    m = np.array([[40.0, 10.0, 30.0, 20.0]])
    assert a.hash == b.hash and a.trees == b.trees and list(a.combine(m, ARCHS)) == list(b.combine(m, ARCHS))
    leaf = ((TREES[0][0], TREES[0][1], TREES[0][2], TREES[0][3], (10.0000001,)), TREES[1])
    assert _surrogate(trees=leaf).hash != a.hash


@pytest.mark.parametrize("trees,match", [
    ((((3, 0.5, 1, 2), (1.0,), (2.0,)),), "input must be an index below 3"),
    ((((0, 0.5, 0, 2), (1.0,), (2.0,)),), "two nodes after it"),
    ((((0, 0.5, 1, 1), (1.0,), (2.0,)),), "two nodes after it"),
    ((((0, float("nan"), 1, 2), (1.0,), (2.0,)),), "threshold must be a number"),
    ((((0, 0.5, 1, 2), (float("inf"),), (2.0,)),), "finite number"),
    ((((0, 0.5, 1),),), r"\[value\] \(a leaf\) or \[input, threshold, left, right\]"),
    (((),), "at least one node"),
])
def test_bad_trees_are_refused_naming_the_tree_and_node(trees, match):
    with pytest.raises(ValueError, match=match):
        _surrogate(trees=trees)


def test_tree_surrogate_files_round_trip_detect_edits_and_refuse_python(tmp_path):
    s = _surrogate(space="autoformer-tiny")
    f = tmp_path / "t.yaml"
    f.write_text(export(s, "yaml"))
    back = load_proxy(f)
    assert isinstance(back, ArchSurrogate) and back.hash == s.hash and back.trees == s.trees
    f.write_text(f.read_text().replace("10.0", "11.0"))
    with pytest.raises(GraphError, match="it was edited"):
        load_proxy(f)
    with pytest.raises(ValueError, match="export text, latex or yaml"):
        export(s, "python")
    no_parts = ArchSurrogate("np", COLS, (0.0, 0.0), trees=(((0, 0.5, 1, 2), (1.0,), (2.0,)),))
    with pytest.raises(ValueError, match="adds regression trees"):
        export(no_parts, "python")


def test_as_trees_reproduces_scikit_learns_predictions():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2, (40, 6)).astype(float), rng.random((40, 3))], axis=1)
    y = x[:, 0] + 2 * x[:, 7] + 0.1 * rng.random(40)
    model = fit_trees(x, y)
    base, trees = as_trees(model, x)
    new = np.concatenate([rng.integers(0, 2, (25, 6)).astype(float), rng.random((25, 3))], axis=1)
    np.testing.assert_allclose(base + treelib.predict(trees, new), model.predict(new), rtol=1e-12, atol=1e-12)
    assert len(trees) == 200 and max(map(treelib.depth, trees)) <= 3


def test_fit_zc_trees_scores_as_the_fitted_trees_predict(tmp_path, tiny_scoring, monkeypatch, capsys):
    import autoprox.eval.fit as fit_mod
    monkeypatch.setattr(fit_mod, "list_proxies", lambda: ["grad_norm", "snip", "synflow", "params"])  # fast ones
    cfg = BenchConfig(space="autoformer-tiny", bench=_labelled(tmp_path, 14, seed=5), scoring=tiny_scoring)
    proxy, info = fit_proxy(cfg, "zc-trees", ("base",))
    assert proxy.trees and info["model"] == "zc-trees" and proxy.space == "autoformer-tiny"
    x, y = zc_inputs(cfg.bench, tiny_scoring)
    want = fit_trees(x, y).predict(x)  # scikit-learn's own prediction
    f = tmp_path / "trees.yaml"
    f.write_text(export(proxy, "yaml"))
    _, by_name, *_ = score_bench(BenchConfig(space="autoformer-tiny", bench=cfg.bench, proxies=(str(f),),
                                             scoring=tiny_scoring))
    np.testing.assert_allclose(by_name[proxy.name], want, atol=1e-9)
    assert info["in_sample"] > 0.8
    with pytest.raises(ValueError, match="--bench-only"):  # fused: ranks its parts among the archs scored together
        search(SearchConfig(proxy=str(f), space="autoformer-tiny", budget=4, scoring=tiny_scoring))
    monkeypatch.setattr(fit_mod, "fit_proxy", lambda *a, **k: (proxy, info))  # the CLI around the fit just made
    assert main(["fit", "--space", "autoformer-tiny", "--bench", cfg.bench, "--model", "zc-trees",
                 "--out", str(tmp_path / "cli.yaml")]) == 0
    assert "zc-trees on 14 labelled archs" in capsys.readouterr().out
    assert load_proxy(tmp_path / "cli.yaml").hash == proxy.hash
