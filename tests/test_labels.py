"""The label-budget study: every method fitted on the same K labels, scored on the same test archs
(``eval.few_labels``), and ``evolve --labels`` end to end."""
import json

import numpy as np
import pytest
from scipy.stats import kendalltau

from autoprox.core.config import ConfigError
from autoprox.discovery.labels import label_study, parse_budgets
from autoprox.eval import alternatives as alt
from autoprox.eval.fitness import INVALID
from autoprox.eval.few_labels import METHODS, PRIOR, Target, draw_labels, evaluate, methods_at, summary
from autoprox.eval.label_report import crossovers, labels_markdown


def _part(n: int, seed: int) -> alt.Part:
    """``n`` archs whose accuracy is the sum of a per-layer choice's effects (what a one-hot ridge
    fits exactly); zoo proxy ``good`` ranks them backwards, ``noise`` at random."""
    rng = np.random.default_rng(seed)
    archs = [{"depth": int(d), "mlp_ratio": [float(x) for x in rng.choice([3.0, 3.5, 4.0], 3)]}
             for d in rng.choice([12, 13, 14], n)]
    effect = {3.0: 0.0, 3.5: 1.0, 4.0: 3.0}
    acc = np.array([sum(effect[x] * (i + 1) for i, x in enumerate(a["mlp_ratio"])) for a in archs])
    acc = acc + 0.01 * rng.standard_normal(n)
    depth = np.array([a["depth"] for a in archs], dtype=float)
    scores = {"good": -acc, "noise": rng.standard_normal(n), "params": depth * 2.0, "depth": depth,
              "depth_width": np.log(depth * 192), "num_params": depth * 2.0}
    return alt.Part(scores, {"imagenet": acc}, archs)


def _target(n: int = 60) -> Target:
    part = _part(n, 0)
    acc = part.targets["imagenet"]
    rng = np.random.default_rng(1)
    # candidate 0, the pick, fit the sources well and is noise here; candidate 2 is this benchmark's accuracy
    cands = np.stack([rng.standard_normal(n), rng.standard_normal(n), acc + 0.1 * rng.standard_normal(n)])
    return Target(cands, np.array([0.9, 0.5, 0.1]), 0, part, (_part(50, 2), _part(50, 3)))


def test_draws_are_seeded_distinct_and_sorted():
    d = draw_labels(60, 10, 3, seed=7)
    assert [len(x) for x in d] == [10, 10, 10] and all(len(set(x)) == 10 and list(x) == sorted(x) for x in d)
    assert [x.tolist() for x in d] == [x.tolist() for x in draw_labels(60, 10, 3, seed=7)]
    assert d[1].tolist() == draw_labels(60, 10, 1, seed=8)[0].tolist() and d[0].tolist() != d[1].tolist()
    assert [x.tolist() for x in draw_labels(60, 0, 5, 0)] == [[]]
    with pytest.raises(ValueError, match="K = 3 needs 4 <= K"):
        draw_labels(60, 3, 2, 0)


def test_zero_shot_uses_the_pick_and_the_sources_choices():
    t = _target()
    scores, chose = methods_at(t, np.zeros(0, dtype=int))
    np.testing.assert_array_equal(scores["discovery"], t.candidates[0])
    assert chose["best zoo"] == "good"  # on the sources `good` ranks backwards: negated, it is right
    np.testing.assert_array_equal(scores["best zoo"], t.part.targets["imagenet"] * 1.0)
    assert not set(scores) & {"discovery fused", "surrogate", "zc surrogate", "zc trees"}


def test_labels_reselect_the_candidate_that_fits_this_benchmark():
    t = _target()
    lab = draw_labels(60, 40, 1, 0)[0]
    scores, chose = methods_at(t, lab)
    assert chose["discovery"] == "candidate 2" and chose["best zoo"] == "good"
    few, _ = methods_at(t, draw_labels(60, 4, 1, 0)[0])  # w = 4/24: the sources still outweigh 4 labels
    np.testing.assert_array_equal(few["discovery"], t.candidates[0])
    test = np.setdiff1d(np.arange(60), lab)
    y = t.part.targets["imagenet"][test]
    assert kendalltau(scores["surrogate"][test], y)[0] > 0.9  # the accuracy is additive in the one-hot columns
    assert kendalltau(scores["best zoo"][test], y)[0] == pytest.approx(1.0)
    # the fused discovery weighs the candidates by their fit to the K labels: candidate 2 carries it
    assert kendalltau(scores["discovery fused"][test], y)[0] > 0.8


def test_evaluate_scores_every_method_on_the_test_archs_only():
    t = _target()
    rows = evaluate(t, [0, 10], draws=3, seed=5)
    assert [(r["k"], r["draw"], r["seed"]) for r in rows] == [(0, 0, 5), (10, 0, 5), (10, 1, 6), (10, 2, 7)]
    r = rows[2]
    lab = np.array(r["labelled"])
    assert lab.tolist() == draw_labels(60, 10, 2, 5)[1].tolist()
    test = np.setdiff1d(np.arange(60), lab)
    y = t.part.targets["imagenet"]
    assert r["tau"]["depth"] == pytest.approx(kendalltau(t.part.scores["depth"][test], y[test])[0])
    assert r["first"]["params"] == y[test][np.argmax(t.part.scores["params"][test])]
    run = set(METHODS) - {"discovery seeded"}  # only where the study runs seeded evolutions
    assert set(r["tau"]) == run and set(rows[0]["tau"]) == run - {"discovery fused", "surrogate", "zc surrogate",
                                                                  "zc trees"}
    iv, d = summary(rows, "depth", 10)
    taus = [x["tau"]["depth"] for x in rows[1:]]
    assert iv.estimate == pytest.approx(np.mean(taus)) and iv.lo <= iv.estimate <= iv.hi
    assert d.estimate == pytest.approx(np.mean([x["tau"]["discovery"] - x["tau"]["depth"] for x in rows[1:]]))
    # the interval resamples each draw's test archs too: wider than the spread of three draw means alone
    assert iv.hi - iv.lo > np.ptp(taus)
    iv0, d0 = summary(rows, "depth", 0)  # zero-shot: one draw, the archs resampled
    assert iv0.estimate == pytest.approx(rows[0]["tau"]["depth"]) and iv0.lo < iv0.estimate < iv0.hi


def test_small_differences_over_few_draws_are_not_significant():
    """Two draws whose differences share a sign are no evidence by themselves: the test archs' own
    variation decides."""
    from autoprox.eval.few_labels import pooled_difference
    t = _target()
    rows2 = evaluate(t, [10], draws=2, seed=0)
    _, d2 = summary(rows2, "depth", 10)
    pooled = pooled_difference({"a": rows2, "b": rows2}, "depth", 10)
    assert pooled.estimate == pytest.approx(d2.estimate) and pooled.lo <= d2.estimate <= pooled.hi
    assert d2.hi - d2.lo > 0.05  # a noise candidate against depth: the archs' variation is in the interval


def test_tied_labels_fall_back_to_the_sources_choice():
    t = _target()
    lab = draw_labels(60, 6, 1, 3)[0]
    y = t.part.targets["imagenet"].copy()
    y[lab] = 70.0  # the six labelled archs tie: no zoo proxy ranks them
    tied = Target(t.candidates, t.source_fit, 0, alt.Part(t.part.scores, {"imagenet": y}, t.part.archs), t.sources)
    scores, chose = methods_at(tied, lab)
    assert chose["best zoo"] == "good" and np.isfinite(scores["best zoo"]).all()


def test_report_advises_per_budget_and_finds_the_crossover():
    t = _target()
    doc = {"ks": [0, 10, 40], "draws": 3, "jcm": "mean_tau", "benchmarks": {
        "a": {"sources": ["b"], "n": 60, "targets": ["imagenet"], "candidates": [{}] * 3,
              "rows": evaluate(t, [0, 10, 40], 3, 0)}}}
    text = labels_markdown(doc)
    assert text.startswith("At a label budget of K trained archs of your own space: with no labels, use **best zoo** "
                           "= **ranker** (`autoprox fit --model ranker`) (mean JCM 1.000 over 1 benchmark; discovery 0.0")
    cross = crossovers(doc)["a"]
    means = lambda k: {m: np.mean([r["tau"][m] for r in doc["benchmarks"]["a"]["rows"] if r["k"] == k])  # noqa: E731
                       for m in ("surrogate", "discovery")}
    assert cross == next((k for k in (10, 40) if means(k)["surrogate"] > means(k)["discovery"]), None)
    assert "| zc trees | - | " in text  # no labels: not run at K = 0


def test_budgets_parse_or_fail_in_one_line():
    assert parse_budgets("20, 0,10,10") == [0, 10, 20]
    for bad in ("", "ten", "0,2"):
        with pytest.raises(ConfigError, match="--labels"):
            parse_budgets(bad)


def test_cli_seed_steps_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    from autoprox.cli.main import main
    for extra, why in ((["--seed-steps", "2"], "--seed-steps needs --labels"),
                       (["--labels", "0,10", "--seed-steps", "-1"], "--seed-steps must be a whole number >= 0, got -1")):
        assert main(["evolve", "--config", "runs/transfer.yaml", *extra, "--out", str(tmp_path / "s")]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"autoprox evolve: error: {why}"]
        assert not (tmp_path / "s").exists()


def test_evolve_labels_end_to_end(two_spaces, tmp_path, small_zoo):
    doc = label_study(two_spaces, tmp_path / "l", [0, 4], draws=2)
    assert set(doc["benchmarks"]) == {"pit", "autoformer"}
    pit = doc["benchmarks"]["pit"]
    assert pit["sources"] == ["autoformer"] and pit["n"] == 10
    assert [(r["k"], len(r["labelled"])) for r in pit["rows"]] == [(0, 0), (4, 4), (4, 4)]
    # K = 0's discovery is the source run's pick, as --transfer scores it
    from autoprox.discovery.report import oriented
    from autoprox.proxy.spec import resolve
    best = resolve(str(tmp_path / "l" / "without-pit" / "best.yaml"))
    assert best.hash == oriented(pit["candidates"][0], "x").hash
    saved = json.loads((tmp_path / "l" / "labels.json").read_text())
    assert [{k: v for k, v in r.items() if k != "_boot"} for r in pit["rows"]] == saved["benchmarks"]["pit"]["rows"]
    assert "_boot" not in json.dumps(saved)
    assert (tmp_path / "l" / "labels.png").read_bytes()[:4] == b"\x89PNG"
    assert "## pit (10 archs; discovered on autoformer;" in (tmp_path / "l" / "labels.md").read_text()
    again = label_study(two_spaces, tmp_path / "l", [0, 4], draws=2, resume=True)
    assert json.loads((tmp_path / "l" / "labels.json").read_text()) == saved and again["ks"] == doc["ks"]


def test_worst_case_objective_takes_the_lowest_space(two_spaces):
    import dataclasses
    from autoprox.discovery.objective import Objective
    recs = {}
    for combine in ("mean", "min"):
        cfg = dataclasses.replace(two_spaces.objective, weights={}, combine=combine)
        obj = Objective(cfg, ["weight"])
        obj.open()
        try:
            recs[combine] = obj.evaluate(["num_params"])[0]
        finally:
            obj.close()
    per = [recs["min"]["per_space"][s]["train"] for s in ("pit", "autoformer")]
    assert recs["min"]["train"] == pytest.approx(min(per)) and recs["mean"]["train"] == pytest.approx(np.mean(per))
    assert per[0] != pytest.approx(per[1])
    with pytest.raises(ConfigError, match="combine must be one of"):
        dataclasses.replace(two_spaces.objective, combine="max")


def test_parsimony_charges_each_node_in_selection_only(two_spaces, tmp_path):
    import dataclasses
    from autoprox.discovery.run import evolve
    cfg = dataclasses.replace(two_spaces, variation=dataclasses.replace(two_spaces.variation, parsimony=0.01))
    run = evolve(cfg, tmp_path / "p")
    from autoprox.discovery.variation import size, to_proxy
    for ind in (i for i in run.population if i.record["reason"] is None):
        nodes = sum(size(q.expr) for q in to_proxy(list(ind), cfg.variation).parts)
        assert ind.fitness.values[0] == pytest.approx(ind.record["train"] - 0.01 * (nodes - 1))
    assert any(sum(size(q.expr) for q in to_proxy(list(i), cfg.variation).parts) > 1 for i in run.population)


def test_seeded_evolution_starts_from_the_rule_and_keeps_its_best(two_spaces, tmp_path, small_zoo):
    """Each draw's seeded run scores proxies as the zero-shot run does, starts from the candidates the
    draw's rule ranks first, and its pick is never worse by that rule than the re-selected candidate."""
    from autoprox.eval.few_labels import reselection
    doc = label_study(two_spaces, tmp_path / "l", [0, 4], draws=2, seed_steps=1)
    pit = doc["benchmarks"]["pit"]
    assert [(c["k"], c["draw"], c["steps"]) for c in pit["seeded_runs"]] == [(4, 0, 1), (4, 1, 1)]
    assert all(c["evals"] >= 4 for c in pit["seeded_runs"])
    zero_shot = {r["expression"]: r for r in map(json.loads, open(tmp_path / "l" / "without-pit" / "history.jsonl"))}
    for row in (r for r in pit["rows"] if r["k"] == 4):
        hist = [json.loads(x) for x in open(tmp_path / "l" / "seeded-pit" / f"k4-draw{row['draw']}" / "history.jsonl")]
        shared = [h for h in hist if h["expression"] in zero_shot and not h["reason"]]
        assert shared and all(h["train"] == pytest.approx(zero_shot[h["expression"]]["train"]) and
                              h["val"] == pytest.approx(zero_shot[h["expression"]]["val"]) for h in shared)
        for h in (h for h in hist if not h["reason"]):  # pick: val; no validation figure: ranked last
            assert h["fitness"] == (pytest.approx(reselection(h["val"], h["label_fit"], 4)) if h["val"] is not None
                                    else INVALID)
        chosen = next(h for h in hist if h["expression"] == row["chose"]["discovery seeded"])
        c = int(row["chose"]["discovery"].split()[1])
        cand = pit["candidates"][c]
        again = next(h for h in hist if h["expression"] == cand["expression"])
        assert chosen["fitness"] >= again["fitness"]  # elitism: the re-selected candidate was in the first population
        assert "discovery seeded" in row["tau"] and np.isfinite(row["tau"]["discovery seeded"])
    text = (tmp_path / "l" / "labels.md").read_text()
    assert "Seeded runs: 2, " in text and "| discovery seeded (more generations, fitness the same rule) | - | " in text
    saved = (tmp_path / "l" / "labels.json").read_text()
    label_study(two_spaces, tmp_path / "l", [0, 4], draws=2, seed_steps=1, resume=True)
    assert (tmp_path / "l" / "labels.json").read_text() == saved  # resumed from every checkpoint: same study
    with pytest.raises(ConfigError, match="steps"):
        label_study(two_spaces, tmp_path / "l", [0, 4], draws=2, seed_steps=2, resume=True)
