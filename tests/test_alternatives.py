"""What a user with labels would do instead of evolving: the alternatives, checked on data whose answer is known."""
import numpy as np
import pytest
from scipy.stats import kendalltau

from autoprox.eval import alternatives as alt
from autoprox.proxy.surrogate import one_hot, one_hot_fields


def _archs(rng, n, depths=(3, 4, 5), widths=(16, 24, 32)):
    out = []
    for _ in range(n):
        d = int(rng.choice(depths))
        out.append({"hidden_dim": int(rng.choice(widths)), "depth": d,
                    "mlp_ratio": [float(rng.choice([3.5, 4.0])) for _ in range(d)]})
    return out


def _part(rng, n, **kw):
    """Archs whose accuracy is an additive function of their choices plus small noise; zoo proxy ``good``
    tracks it, ``bad`` is noise, ``upside`` is it negated, ``evolved_x`` is it exactly (an earlier discovery)."""
    archs = _archs(rng, n, **kw)
    acc = np.array([0.02 * a["hidden_dim"] + 0.5 * a["depth"] + sum(m == 4.0 for m in a["mlp_ratio"]) * 0.3
                    for a in archs]) + rng.normal(0, 0.05, n)
    scores = {"good": acc + rng.normal(0, 0.3, n), "bad": rng.normal(size=n), "upside": -acc + rng.normal(0, 0.2, n),
              "evolved_x": acc.copy(), "params": np.array([a["hidden_dim"] ** 2 * a["depth"] for a in archs], float),
              "depth_width": np.array([np.log(a["depth"] * a["hidden_dim"]) for a in archs]),
              **{s: rng.normal(size=n) for s in alt.SCALARS}}
    scores["depth"] = np.array([a["depth"] for a in archs], float)
    return alt.Part(scores, {"acc": acc, "acc2": acc + rng.normal(0, 0.05, n)}, archs)


def test_ridge_is_least_squares_without_penalty_and_the_mean_with_a_huge_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)) * [1, 10, 100] + [0, 5, -50]
    y = x @ [1.0, -0.2, 0.03] + 2 + rng.normal(0, 0.1, 40)
    ls = np.linalg.lstsq(np.c_[x, np.ones(40)], y, rcond=None)[0]
    np.testing.assert_allclose(alt.ridge(x, y, 1e-9), ls, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(alt.predict(alt.ridge(x, y, 1e12), x), np.full(40, y.mean()), atol=1e-6)


def test_within_ranks_put_non_finite_and_constant_values_in_the_middle():
    np.testing.assert_allclose(alt.within_ranks(np.array([3.0, np.nan, 1.0, 2.0, np.inf])), [1, 0.5, 1 / 3, 2 / 3, 0.5])
    np.testing.assert_allclose(alt.within_ranks(np.ones(4)), np.full(4, 0.5))


def test_one_hot_encodes_each_layer_and_absent_layers_and_ignores_unseen_values():
    archs = [{"w": 16, "m": [3.5, 4.0]}, {"w": 32, "m": [4.0]}]
    fields = one_hot_fields(archs)
    assert fields == {("w",): [16, 32], ("m", 0): [3.5, 4.0], ("m", 1): [4.0, None]}
    np.testing.assert_array_equal(one_hot(archs, fields), [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(one_hot([{"w": 24, "m": [3.0, 4.0, 4.0]}], fields), [[0, 0, 0, 0, 1, 0]])


def test_fit_chooses_the_best_hand_designed_proxy_and_fits_the_ranker_and_surrogate():
    rng = np.random.default_rng(1)
    train, test = _part(rng, 120), _part(rng, 80)
    f = alt.fit([train])
    assert f.best == ("upside", -1)  # tighter than `good`, negated on the training archs; `evolved_x` never chosen
    assert "evolved_x" not in f.ranker[0] and "good" in f.ranker[0] and set(alt.SCALARS) <= set(f.ranker[0])
    s = f.score(test)
    assert set(s) == set(alt.NAMES)
    y = test.targets["acc"]
    assert kendalltau(s["best zoo"], y)[0] == pytest.approx(kendalltau(-test.scores["upside"], y)[0])
    assert kendalltau(s["ranker"], y)[0] > kendalltau(s["best zoo"], y)[0] > 0.6  # two noisy views beat one
    assert kendalltau(s["surrogate"], y)[0] > 0.85  # the accuracy is additive in the choices it encodes
    np.testing.assert_array_equal(s["depth"], test.scores["depth"])
    foreign = alt.Part(test.scores, test.targets, [a | {"stage": [1]} for a in test.archs])
    assert "surrogate" not in f.score(foreign)  # fields its training archs did not have
    assert alt.jcm_of(s["surrogate"], test.targets) == pytest.approx(
        np.mean([kendalltau(s["surrogate"], t)[0] for t in test.targets.values()]))


def test_fit_pools_benchmarks_and_needs_a_hand_designed_proxy():
    rng = np.random.default_rng(2)
    a, b = _part(rng, 60), _part(rng, 60, widths=(40, 48))
    f = alt.fit([a, b])
    assert f.surrogate is not None and any(c == ("hidden_dim",) and 48 in v for c, v in f.surrogate[0].items())
    bare = alt.Part({k: v for k, v in a.scores.items() if k in alt.SCALARS or k.startswith("evolved_")},
                    a.targets, a.archs)
    with pytest.raises(ValueError, match="no hand-designed zoo proxy"):
        alt.fit([bare])


def test_top_pick_gives_the_first_archs_accuracy_and_regret():
    top = alt.top_pick(np.array([0.1, np.nan, 0.9, 0.5]), {"a": np.array([70.0, 99.0, 72.0, 75.0])})
    assert top == {"a": 72.0, "a_regret": 27.0}
