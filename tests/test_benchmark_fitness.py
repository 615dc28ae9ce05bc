import json

import numpy as np
import pytest

from autoprox.data.benchmark import BenchmarkError, load_benchmark
from autoprox.eval.fitness import INVALID, correlations, invalid_reason, jcm


@pytest.mark.parametrize("space", ["autoformer", "pit"])
def test_shipped_benchmarks(space):
    b = load_benchmark(space)
    assert len(b) == 100
    assert b.default_targets() == ["c100_kd", "flower_kd", "chaoyang_kd"]
    assert ("imagenet_super" in b.targets()) == (space == "autoformer")
    assert b.values("c100_kd")[0] == pytest.approx(76.06 if space == "autoformer" else 72.5)


def test_user_benchmark_file(tmp_path):
    recs = [{"arch": {"a": i}, "mine_acc": float(i), "other_acc": 1.0} for i in range(5)]
    p = tmp_path / "b.json"
    p.write_text(json.dumps(recs))
    b = load_benchmark("pit", p)
    assert b.targets() == ["mine", "other"] and b.default_targets() == ["mine", "other"]
    assert b.values("mine").tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("content,msg", [
    ("not json", "not valid JSON"), ("[]", "non-empty list"), ('[{"x": 1}]', "no 'arch'"),
    ('[{"arch": {}, "a_acc": "x"}]', "finite number"), ('[{"arch": {}}]', "no '<name>_acc'"),
])
def test_malformed_benchmark_files(tmp_path, content, msg):
    p = tmp_path / "b.json"
    p.write_text(content)
    with pytest.raises(BenchmarkError, match=msg):
        load_benchmark("pit", p)


def test_missing_benchmark_file(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        load_benchmark("pit", tmp_path / "nope.json")


def test_correlations_known_values():
    c = correlations(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4]))
    assert c["kendall"] == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert c["spearman"] == pytest.approx(0.8)
    assert c["pearson"] == pytest.approx(0.8)


def test_jcm_orients_once_and_variants():
    y = {"a": np.array([1.0, 2, 3, 4]), "b": np.array([1.0, 3, 2, 4])}
    s = -np.array([1.0, 2, 3, 4])
    f = jcm(s, y)
    assert f.sign == -1 and f.jcm == pytest.approx((1 + 4 / 6) / 2)
    assert f.per_target["a"]["kendall"] == pytest.approx(1.0)
    mixed = {"a": np.array([1.0, 2, 3, 4]), "b": np.array([4.0, 3, 2, 1])}
    assert jcm(np.array([1.0, 2, 3, 4]), mixed).jcm == pytest.approx(0.0)
    assert jcm(np.array([1.0, 2, 3, 4]), mixed, "mean_abs_tau").jcm == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown JCM variant"):
        jcm(s, y, "median")  # type: ignore[arg-type]


@pytest.mark.parametrize("scores,reason", [
    ([1.0, float("nan"), 2.0, 3.0], "non-finite"), ([1.0, float("inf"), 2.0, 3.0], "non-finite"),
    ([2.0, 2.0, 2.0, 2.0], "all scores equal"),
])
def test_invalid_scores_give_fitness_minus_one(scores, reason):
    assert reason in invalid_reason(scores)
    f = jcm(np.array(scores), {"a": np.array([1.0, 2, 3, 4])})
    assert f.jcm == INVALID and not f.valid


def test_one_orientation_rule_weighs_each_benchmarks_mean_tau():
    from autoprox.eval.fitness import orient
    assert orient([0.3, -0.2]) == 1 and orient([0.1, -0.2]) == -1 and orient([0.1, -0.2], [3, 1]) == 1
    assert orient([0.0]) == 1  # no evidence either way: as the proxy is written
