"""Bootstrap intervals, paired differences, the oracle ceiling, partial tau; arch scalars as
data-free leaves; the depth_width baseline; intervals in bench output."""
import csv
import math

import numpy as np
import pytest
from scipy import stats as sps

from autoprox.eval import uncertainty as u

RNG = np.random.default_rng(0)
X = RNG.normal(size=60)
Y = X + RNG.normal(size=60)
TARGETS = {"a": Y, "b": X + RNG.normal(size=60)}


def test_weighted_tau_equals_scipy_on_the_sample_and_on_a_materialised_resample():
    ones = np.ones((1, 60))
    assert u.boot_kendall(X, Y, ones)[0] == pytest.approx(sps.kendalltau(X, Y).statistic, abs=1e-12)
    w = u.resample_weights(60, 3, seed=5)
    assert np.all(w.sum(axis=1) == 60)
    idx = np.repeat(np.arange(60), w[1].astype(int))  # the resample as a list of drawn archs
    assert u.boot_kendall(X, Y, w)[1] == pytest.approx(sps.kendalltau(X[idx], Y[idx]).statistic, abs=1e-12)


def test_statistic_ci_of_an_arbitrary_statistic_equals_materialised_resamples():
    mean = lambda w: float(w @ X / w.sum())  # noqa: E731  (the mean of the drawn archs)
    ci = u.statistic_ci(mean, 60, n_boot=300, seed=2)
    means = [X[np.repeat(np.arange(60), w.astype(int))].mean() for w in u.resample_weights(60, 300, seed=2)]
    assert ci.estimate == pytest.approx(X.mean(), abs=1e-12)
    assert (ci.lo, ci.hi) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    assert ci.lo < ci.estimate < ci.hi and u.statistic_ci(mean, 60, n_boot=300, seed=2) == ci


def test_monotone_proxy_has_interval_one_one():
    ci = u.kendall_ci(np.exp(X), X, n_boot=200, seed=1)
    assert (ci.estimate, ci.lo, ci.hi) == (1.0, 1.0, 1.0)
    j = u.jcm_ci(-X, {"a": X, "b": 2 * X}, n_boot=200, seed=1)  # oriented once: -X scores JCM 1
    assert (j.estimate, j.lo, j.hi) == (1.0, 1.0, 1.0)


def test_independent_proxy_interval_covers_zero_and_is_seeded():
    noise = np.random.default_rng(7).normal(size=60)
    ci = u.kendall_ci(noise, Y, n_boot=500, seed=3)
    assert ci.lo < 0 < ci.hi
    assert u.kendall_ci(noise, Y, n_boot=500, seed=3) == ci
    assert u.kendall_ci(noise, Y, n_boot=500, seed=4) != ci
    # the 95% interval of a tau on 60 archs is about +-2 * sqrt(2(2n+5)/(9n(n-1))) = +-0.18 wide each side
    assert 0.25 < ci.hi - ci.lo < 0.5


def test_paired_difference_with_itself_is_zero_with_p_one():
    d = u.paired_difference(X, X, TARGETS, n_boot=300, seed=0)
    assert (d.estimate, d.lo, d.hi, d.p) == (0.0, 0.0, 0.0, 1.0)
    assert d.verdict == "not significant"


def test_paired_difference_of_a_better_proxy():
    noisy = X + np.random.default_rng(1).normal(scale=3.0, size=60)
    d = u.paired_difference(X, noisy, TARGETS, n_boot=500, seed=0)
    want = u.jcm_ci(X, TARGETS, n_boot=2).estimate - u.jcm_ci(noisy, TARGETS, n_boot=2).estimate
    assert d.estimate == pytest.approx(want)
    assert d.lo > 0 and d.verdict == "yes" and d.p == pytest.approx(2 / 501)  # no resample at or below 0
    assert u.paired_difference(noisy, X, TARGETS, n_boot=500, seed=0).verdict == "no"


def test_ceiling_of_agreeing_targets_is_one_and_headroom():
    assert u.ceiling_ci({"a": X, "b": 3 * X + 1}, n_boot=50).estimate == 1.0
    np.testing.assert_array_equal(u.oracle_scores({"a": [3.0, 1.0, 2.0], "b": [1.0, 2.0, 3.0]}), [4.0, 3.0, 5.0])
    assert u.headroom(0.575, 0.521, 0.607) == pytest.approx(0.054 / 0.086)
    assert math.isnan(u.headroom(0.5, 0.6, 0.6))


def test_partial_kendall_by_hand():
    x, y, z = [1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 4, 3]
    # by pair count: (x,y) 5 concordant 1 discordant -> 2/3; (x,z) 5C 1D -> 2/3; (y,z) 4C 2D -> 1/3
    txy, txz, tyz = 2 / 3, 2 / 3, 1 / 3
    want = (txy - txz * tyz) / math.sqrt((1 - txz ** 2) * (1 - tyz ** 2))  # (4/9) / (sqrt(40)/9)
    assert want == pytest.approx(4 / math.sqrt(40))
    assert u.partial_kendall(x, y, z) == pytest.approx(want)
    assert math.isnan(u.partial_kendall(z, y, z))  # a proxy that ranks as the size itself: undefined
    tied = np.repeat(np.arange(7.0), 7)  # 49 values with ties: scipy's tau-b with itself is 1 - 2e-16
    assert math.isnan(u.partial_kendall(tied, np.arange(49.0), tied))


def test_beyond_size_is_the_mean_oriented_partial_tau():
    size = X + np.random.default_rng(2).normal(size=60)
    ci = u.beyond_size_ci(-X, TARGETS, size, n_boot=200, seed=0)  # -X is oriented to X
    want = np.mean([u.partial_kendall(X, t, size) for t in TARGETS.values()])
    assert ci.estimate == pytest.approx(want) and ci.lo < want < ci.hi


def test_arch_scalars_of_both_spaces():
    from autoprox.spaces import get_space
    af = {"hidden_dim": 216, "depth": 13, "mlp_ratio": [3.5] * 3 + [4.0] * 10, "num_heads": [3] * 4 + [4] * 9}
    assert get_space("autoformer").arch_scalars(af) == {"depth": 13.0, "width": 216.0, "heads": (12 + 36) / 13,
                                                        "mlp_ratio": (10.5 + 40) / 13}
    pit = {"base_dim": 40, "mlp_ratio": 8, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}
    # block-weighted mean heads (2*2 + 6*4 + 4*8) / 12 = 5; width = 40 * 5
    assert get_space("pit").arch_scalars(pit) == {"depth": 12.0, "width": 200.0, "heads": 5.0, "mlp_ratio": 8.0}


def test_arch_scalars_are_data_free_leaves_and_not_stored_in_the_cache(tiny_scoring):
    from conftest import SMALL
    from autoprox.proxy.spec import resolve
    from autoprox.proxy.zoo import list_proxies
    from autoprox.stats.provider import StatsProvider
    assert resolve("depth_width").families == frozenset() and "depth_width" in list_proxies()
    prov = StatsProvider("pit", tiny_scoring)
    free = prov.get(SMALL["pit"])  # no family: nothing built, nothing cached
    assert free.scalars["depth"] == 13.0 and free.scalars["width"] == 32.0 and not free.tensors
    with_base = prov.get(SMALL["pit"], {"weight"})
    stored = prov.cache.load("pit", prov.key(SMALL["pit"], "base"))
    assert set(stored.scalars) == {"num_params", "flops", "loss"}  # what the base pass always stored
    assert with_base.scalars["width"] == 32.0 and with_base.scalars["mlp_ratio"] == 2.0


def test_bench_reports_intervals_differences_and_ceiling(tmp_path, capsys):
    from autoprox.cli.main import main
    assert main(["bench", "--space", "autoformer", "--proxy", "depth_width", "--n-boot", "200",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert [r["dataset"] for r in rows] == ["c100_kd", "flower_kd", "chaoyang_kd", "JCM"]
    j = rows[-1]
    assert float(j["kendall"]) == pytest.approx(0.5753, abs=1e-4)  # the structural baseline
    assert float(j["kendall_lo"]) < 0.5753 < float(j["kendall_hi"])
    assert float(j["diff_params"]) == pytest.approx(0.5753 - 0.5209, abs=2e-4) and j["beats_params"] == "yes"
    assert j["diff_depth_width"] == "" and float(j["ceiling"]) == pytest.approx(0.6072, abs=1e-4)
    assert float(j["headroom"]) == pytest.approx((0.5753 - 0.5209) / (0.6072 - 0.5209), abs=2e-3)
    assert "| depth_width | c100_kd | 100 | 0.640 |" in out and "ceiling (rank-sum oracle" in out
    assert "| depth_width | 0.575 [" in out


def test_python_export_of_depth_width_reads_the_given_arch_scalars(tmp_path, tiny_batch, tiny_scoring):
    import importlib.util
    from conftest import SMALL, score_named
    from autoprox.parallel.backends import SerialBackend
    from autoprox.proxy.export import export
    from autoprox.proxy.zoo import get_proxy
    from autoprox.spaces import get_space
    path = tmp_path / "dw.py"
    path.write_text(export(get_proxy("depth_width"), "python"))
    spec = importlib.util.spec_from_file_location("exported_dw", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sp = get_space("autoformer")
    model = sp.build(SMALL["autoformer"], num_classes=10, img_size=32, seed=0)
    got = mod.score(model, tiny_batch.images, tiny_batch.labels, arch_scalars=sp.arch_scalars(SMALL["autoformer"]))
    backend = SerialBackend("autoformer", tiny_scoring)
    backend.load([SMALL["autoformer"]], [])
    assert got == pytest.approx(math.log(12 * 192), rel=1e-6)
    assert score_named(backend, ["depth_width"])[0, 0] == pytest.approx(got, rel=1e-6)


def test_evolve_summary_shows_fold_intervals_and_the_picks_difference_vs_params():
    from types import SimpleNamespace
    from autoprox.eval.fitness import jcm
    from autoprox.discovery.report import fold_intervals, summary_table
    folds = {"train": np.arange(0, 40), "val": np.arange(40, 60), "test": np.array([], dtype=int)}
    sd = SimpleNamespace(name="pit", targets=TARGETS, folds=folds)
    size = X + np.random.default_rng(3).normal(scale=2.0, size=60)
    mats = {"pit": np.stack([-X, size, size])}  # pick (sign -1), a zoo proxy, then #params
    named = [("pick", {"sign": -1}), ("params", {"sign": 1})]
    iv = fold_intervals(named, mats, [sd], "mean_tau", n_boot=200)
    idx = folds["val"]
    want = jcm(X[idx], {t: y[idx] for t, y in TARGETS.items()}).jcm
    assert iv["pick"]["val"]["estimate"] == pytest.approx(want) and "test" not in iv["pick"]
    assert iv["pick"]["val"]["lo"] < want < iv["pick"]["val"]["hi"]
    want_d = want - jcm(size[idx], {t: y[idx] for t, y in TARGETS.items()}).jcm
    assert iv["pick"]["val_diff"]["estimate"] == pytest.approx(want_d)
    assert iv["params"]["val"]["lo"] < iv["params"]["val"]["estimate"] and "val_diff" not in iv["params"]
    rec = {"expression": "agg_sum(abs(weight))", "sign": -1, "train": iv["pick"]["train"]["estimate"], "val": want,
           "test": None}
    doc = {"name": "run", "pick": rec, "zoo": [("params", {"train": 0.1, "val": 0.2, "test": None})],
           "jcm": "mean_tau", "targets": list(TARGETS), "spaces": ["pit"], "folds": {"train": 40}, "intervals": iv}
    md = summary_table(doc)
    assert f"| **pick** run | {rec['train']:.3f} [{iv['pick']['train']['lo']:.3f}, " in md
    assert f"| val | {want_d:.3f} [" in md and "beats #params" in md
    assert md.startswith("Pick: `agg_sum(|weight|)` (negated). On the validation fold it ")
