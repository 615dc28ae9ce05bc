"""Discovery beyond single graphs: fused genomes, proxy texts, the probe that redraws
structurally useless candidates."""
import random

import numpy as np
import pytest

from autoprox.discovery.config import EvolveConfig
from autoprox.discovery.run import evolve
from autoprox.discovery.objective import Objective, ObjectiveConfig
from autoprox.discovery.variation import VariationConfig, crossover, mutate, random_genome, to_proxy, validate
from autoprox.proxy.export import load_proxy, to_yaml
from autoprox.proxy.fuse import rank_sum
from autoprox.proxy.spec import resolve

VAR = VariationConfig(leaves=("weight", "weight_grad", "linear_input"), single_leaves=("num_params",),
                      max_nodes=8, max_parts=2, fuse_prob=0.6)


def test_fused_genomes_stay_valid_sorted_and_within_max_parts():
    rng = random.Random(0)
    pop = [random_genome(rng, VAR) for _ in range(30)]
    assert {len(g) for g in pop} == {1, 2}  # fuse_prob 0.6: both kinds are drawn
    for _ in range(60):
        a, b = rng.sample(pop, 2)
        for child in (mutate(a, rng, VAR), *crossover(a, b, rng, VAR)):
            assert 1 <= len(child) <= 2 and child == sorted(child) == validate(child, VAR)
    fused = next(g for g in pop if len(g) == 2)
    p = to_proxy(fused, VAR)
    assert p.fused and p.text == f"rank_sum[{fused[0]} | {fused[1]}]"
    assert resolve(p.text).hash == p.hash == to_proxy(fused[::-1], VAR).hash  # part order does not matter


def test_plain_configs_draw_exactly_as_before_fusion():
    """max_parts 1 (the default) keeps every seeded draw: old runs reproduce."""
    cfg = VariationConfig()
    assert cfg.max_parts == 1
    rng = random.Random(3)
    g = random_genome(rng, cfg)
    state = rng.getstate()
    rng2 = random.Random(3)
    assert random_genome(rng2, cfg) == g and rng2.getstate() == state
    assert len(mutate(g, rng, cfg)) == 1


def test_fused_proxy_file_and_negation(tmp_path):
    p = resolve("rank_sum[num_params | agg_sum(abs(weight))]", "x")
    (tmp_path / "x.yaml").write_text(to_yaml(p))
    q = load_proxy(tmp_path / "x.yaml")
    assert q.fused and q.hash == p.hash and q.name == "x"
    m = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(p.combine(m), rank_sum(m))
    np.testing.assert_array_equal(p.negated().combine(-m), rank_sum(-m))  # reversed ranking: 8 - fused
    np.testing.assert_array_equal(rank_sum(-m), 8 - rank_sum(m))


@pytest.fixture(scope="module")
def tiny_obj(tmp_path_factory, tiny_batch_cfg):
    from autoprox.stats.base import StatsConfig
    from autoprox.stats.provider import ScoringConfig
    scoring = ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                            cache_dir=str(tmp_path_factory.mktemp("disc-cache")))
    return ObjectiveConfig(spaces=("pit",), limit=12, val_fraction=0.25, test_fraction=0.25, scoring=scoring)


def test_probe_names_non_finite_and_constant_candidates(tiny_obj):
    obj = Objective(tiny_obj, ["weight", "input_grad_corr"])
    obj.open()
    try:
        reasons = obj.probe(["num_params", "log(negate(num_params))", "max(input_grad_corr)",
                             "rank_sum[num_params | max(input_grad_corr)]"], first=3)
        full = obj.proxy_scores(["max(input_grad_corr)"])["pit"][0]
    finally:
        obj.close()
    assert reasons[0] is None
    assert "3 non-finite" in reasons[1] and "all scores equal" in reasons[2] and "all scores equal" in reasons[3]
    np.testing.assert_allclose(full, np.ones(12), rtol=1e-6)  # a correlation matrix's max is its diagonal: 1 (to float rounding)


def test_evolution_with_fused_genomes_and_repair(tiny_obj, tmp_path, small_zoo):
    var = VariationConfig(leaves=("weight", "weight_grad", "linear_input", "norm_output_grad"),
                          single_leaves=("num_params",), max_nodes=10, max_parts=2, fuse_prob=0.5)
    cfg = EvolveConfig(population=6, steps=2, offspring=6, hall_of_fame=4, objective=tiny_obj, variation=var,
                       seed_proxies=("rank_sum[num_params | agg_sum(abs(weight))]", "snip"))
    run = evolve(cfg, tmp_path / "r")
    rows = run.progress_rows
    assert rows[-1]["unique"] == len(run.memo) and rows[-1]["invalid"] == sum(bool(r["reason"]) for r in run.memo.values())
    assert any(resolve(r["expression"]).fused for r in run.memo.values())
    best = resolve(str(tmp_path / "r" / "best.yaml"))
    assert best.hash == (resolve(run.pick().record["expression"]).negated() if run.pick().record["sign"] < 0
                         else resolve(run.pick().record["expression"])).hash
    again = evolve(cfg, tmp_path / "again")
    assert (tmp_path / "r" / "history.jsonl").read_text() == (tmp_path / "again" / "history.jsonl").read_text()


def test_cross_validation_reports_out_of_fold_picks_and_picks_without_test(tiny_obj, tmp_path, small_zoo):
    from autoprox.discovery.cv import cross_validate
    var = VariationConfig(leaves=("weight", "linear_input"), single_leaves=("num_params",), max_nodes=8)
    cfg = EvolveConfig(population=4, steps=1, offspring=4, hall_of_fame=3, objective=tiny_obj, variation=var,
                       seed_proxies=("params",))
    rows, final = cross_validate(cfg, tmp_path / "cv", 2)
    assert [r["fold"] for r in rows] == [0, 1] and all(r["test"] is not None and r["params"] is not None for r in rows)
    folds = [(tmp_path / "cv" / f"fold-{i}" / "config.yaml").read_text() for i in range(2)]
    assert "cv_folds: 2" in folds[0] and "cv_fold: 1" in folds[1]
    assert len(final.obj.spaces[0].folds["test"]) == 0 and final.pick().record["test"] is None
    assert (tmp_path / "cv" / "best.yaml").read_text() == (tmp_path / "cv" / "final" / "best.yaml").read_text()
    text = (tmp_path / "cv" / "cv.md").read_text()
    # folds: header, 2, mean; per space: header, 1; paired: header, 6 (params, depth_width, best zoo, ranker,
    # depth, surrogate); what the alternatives became: header, 2; first archs: header, 7 (the pick and the 6)
    assert "held-out" in text and text.count("\n| ") == 24
    assert f"Throughput of the fold runs: {rows[0]['evals_per_s']:.2f}, " in text and rows[0]["evals_per_s"] > 0
    assert [ln.split(" | ")[1] for ln in text.splitlines() if ln.startswith("| pit | ") and "regret" in ln] == [
        "pick", "params", "depth_width", "best zoo", "ranker", "depth", "surrogate"]
    again, _ = cross_validate(cfg, tmp_path / "cv", 2, resume=True)  # finished: resumes to the same figures
    assert again == rows
    for only in ("final", "fold-1", "fold-0"):  # each run alone (as parallel processes would), then gathered
        _, run = cross_validate(cfg, tmp_path / "split", 2, only=only)
        assert not (tmp_path / "split" / "cv.md").exists() and run.out.name == only
    from autoprox.eval.uncertainty import ceiling_ci, headroom
    sd = run.obj.spaces[0]  # fold 0's held-out archs: the per-space figures are its, the ceiling the oracle's
    ys = {t: y[sd.folds["test"]] for t, y in sd.targets.items()}
    per = rows[0]["spaces"][sd.name]
    assert per["ceiling"] == pytest.approx(ceiling_ci(ys, n_boot=1).estimate)
    assert per["pick"] == pytest.approx(rows[0]["test"]) and per["params"] == pytest.approx(rows[0]["params"])
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {sd.name} |"))
    means = {c: np.mean([r["spaces"][sd.name][c] for r in rows]) for c in ("pick", "params", "ceiling")}
    room = headroom(means["pick"], means["params"], means["ceiling"])
    assert line.split(" | ")[4].startswith(f"{means['ceiling']:.3f}")
    assert line.split(" | ")[5] == (f"{room:.0%}" if np.isfinite(room) else "-")
    paired = next(ln for ln in text.splitlines() if ln.startswith(f"| {sd.name} | params |"))
    diff = np.mean([r["spaces"][sd.name]["pick"] - r["spaces"][sd.name]["params"] for r in rows])
    assert paired.split(" | ")[2].startswith(f"{means['params']:.3f} [")  # the baseline's own JCM, with its CI
    assert paired.split(" | ")[4].startswith(f"{diff:+.3f} [")  # the folds' mean paired difference, with its CI
    gathered, _ = cross_validate(cfg, tmp_path / "split", 2, resume=True)
    timeless = (lambda rs: [{k: v for k, v in r.items() if k != "evals_per_s"} for r in rs])  # runs' own speeds differ
    assert timeless(gathered) == timeless(rows)
    same = (lambda t: [ln for ln in t.splitlines() if not ln.startswith("Throughput")])
    assert same((tmp_path / "split" / "cv.md").read_text()) == same(text)
    with pytest.raises(ValueError, match="expected 0 to 1 or 'final'"):
        cross_validate(cfg, tmp_path / "bad", 2, only="fold-2")


def test_cv_table_gives_per_space_means_and_the_headroom_closed():
    from autoprox.discovery.cv import cv_markdown
    rows = [{"fold": i, "pick": "x", "val": 0.5, "test": t, "params": p, "depth_width": d,
             "spaces": {"pit": {"pick": t, "params": p, "depth_width": d, "ceiling": c}}}
            for i, (t, p, d, c) in enumerate([(0.6, 0.5, 0.55, 0.7), (0.7, 0.6, 0.65, 0.8)])]
    line = next(ln for ln in cv_markdown(rows, 2).splitlines() if ln.startswith("| pit |"))
    # means: pick 0.65, params 0.55, depth_width 0.60, ceiling 0.75 -> headroom 50% and 25%
    assert line == "| pit | 0.650 ± 0.050 | 0.550 ± 0.050 | 0.600 ± 0.050 | 0.750 ± 0.050 | 50% | 25% |"
    assert cv_markdown(rows, 2, "train_val").startswith(
        "Out-of-fold JCM of the engine's picks, 2 folds (each pick chosen on train and validation together, "
        "never on its held-out fold: `pick: train_val`).")


def test_beyond_size_objective_rewards_the_partial_tau_given_params(tiny_obj):
    import dataclasses
    from autoprox.eval.uncertainty import partial_kendall
    obj = Objective(dataclasses.replace(tiny_obj, beyond_size=0.5), ["weight_grad"])
    obj.open()
    try:
        size_rec, w_rec = obj.evaluate(["num_params", "agg_sum(abs(weight_grad))"])
        w = obj.proxy_scores(["agg_sum(abs(weight_grad))"])["pit"][0]
    finally:
        obj.close()
    assert size_rec["beyond_train"] == 0.0 and size_rec["fitness"] == size_rec["train"]  # nothing beyond size
    sd = obj.spaces[0]
    idx = sd.folds["train"]
    want = np.nanmean([partial_kendall(w_rec["sign"] * w[idx], y[idx], sd.size[idx]) for y in sd.targets.values()])
    assert np.isfinite(want) and w_rec["beyond_train"] == pytest.approx(want) and w_rec["fitness"] == pytest.approx(w_rec["train"] + 0.5 * want)


def test_summary_says_in_words_whether_the_pick_beats_params():
    from autoprox.discovery.report import verdict_sentence
    pick = {"expression": "rank_sum[num_params | agg_sum(abs(weight))]", "sign": 1}
    iv = {"val_diff": {"estimate": 0.046, "lo": -0.088, "hi": 0.22, "p": 0.521, "verdict": "not significant"},
          "test_diff": {"estimate": 0.082, "lo": 0.006, "hi": 0.181, "p": 0.026, "verdict": "yes"}}
    assert verdict_sentence(pick, iv) == (
        "Pick: `rank_sum(agg_sum(|weight|); num_params)`. On the validation fold it does not beat #params "
        "significantly (JCM difference +0.046 [-0.088, 0.220], p = 0.521). On the test fold it beats #params "
        "(JCM difference +0.082 [0.006, 0.181], p = 0.026).")


def test_long_expressions_are_not_taken_for_file_names():
    """An expression longer than a file name may be (a fused genome, say) still resolves."""
    long = " | ".join(["agg_sum(abs(weight))", "agg_sum(sum(abs(linear_input)))", "num_params"])
    part = "element_wise_sum(" * 20 + "num_params" + ",num_params)" * 20
    p = resolve(f"rank_sum[{long} | {part}]")
    assert p.fused and len(p.text) > 300 and len(p.parts) == 4


def test_summary_compares_with_depth_width_and_says_when_no_statistics_are_read():
    from autoprox.discovery.report import verdict_sentence
    iv = {"val_diff": {"estimate": 0.046, "lo": -0.088, "hi": 0.22, "p": 0.521, "verdict": "not significant"}}
    dw = {"val_diff": {"estimate": -0.03, "lo": -0.05, "hi": -0.01, "p": 0.004, "verdict": "no"}}
    text = verdict_sentence({"expression": "width", "sign": 1}, iv, dw)
    assert text == ("Pick: `width`. It reads no statistics: it is a function of the arch's shape alone, computed "
                    "without building a model. On the validation fold it does not beat #params significantly "
                    "(JCM difference +0.046 [-0.088, 0.220], p = 0.521); it is worse than depth_width "
                    "(JCM difference -0.030 [-0.050, -0.010], p = 0.004).")
    assert "reads no statistics" not in verdict_sentence({"expression": "agg_sum(abs(weight))", "sign": 1}, iv, dw)


def test_cv_paired_tests_pool_spaces_with_the_objectives_weights_and_variant():
    """The "all spaces" rows weigh each space as ``objective.weights`` does, and every row uses the run's
    JCM variant (``mean_abs_tau`` scores a proxy anticorrelated with one target by its |tau|)."""
    from autoprox.discovery.cv import cv_markdown
    from autoprox.eval.fitness import jcm
    rng = np.random.default_rng(0)
    y = {sp: {"a": rng.normal(size=30), "b": rng.normal(size=30)} for sp in ("pit", "autoformer")}
    pick = {sp: (t["a"] - t["b"] + rng.normal(size=30)).tolist() for sp, t in y.items()}
    size = {sp: (t["a"] + 2 * rng.normal(size=30)).tolist() for sp, t in y.items()}
    rows = [{"fold": 0, "pick": "x", "val": 0.5, "test": 0.5, "params": 0.1, "depth_width": 0.1,
             "spaces": {sp: {"held": {"pick": (1, pick[sp]), "params": (1, size[sp])},
                             "targets": {t: v.tolist() for t, v in y[sp].items()}} for sp in y}}]
    for variant, w in (("mean_tau", {"pit": 3.0}), ("mean_abs_tau", {})):
        per = {sp: jcm(np.array(pick[sp]), y[sp], variant, sign=1).jcm for sp in y}
        want = np.average([per["pit"], per["autoformer"]], weights=[w.get("pit", 1.0), 1.0])
        text = cv_markdown(rows, 2, variant=variant, weights=w)
        line = next(ln for ln in text.splitlines() if ln.startswith("| all spaces | params |"))
        assert line.split(" | ")[3].startswith(f"{want:.3f} [")
        line = next(ln for ln in text.splitlines() if ln.startswith("| pit | params |"))
        assert line.split(" | ")[3].startswith(f"{per['pit']:.3f} [")
