import csv
import json
import random
from dataclasses import replace

import numpy as np
import pytest
import yaml

from autoprox.cli.main import main
from autoprox.core.config import ConfigError, save_config
from autoprox.discovery.config import EvolveConfig
from autoprox.discovery.loop import make_types
from autoprox.discovery.run import evolve
from autoprox.eval.fitness import INVALID
from autoprox.proxy.graph import GraphError, parse
from autoprox.data.benchmark import split3
from autoprox.discovery.objective import Objective, ObjectiveConfig, SpaceData
from autoprox.discovery.variation import (STRUCTURES, VariationConfig, crossover, depth, mutate, random_genome, size,
                                to_expr, validate)
from autoprox.proxy.spec import resolve as resolve_proxy

from conftest import assert_png

pytestmark = pytest.mark.usefixtures("small_zoo")  # run reports compare with four zoo proxies: fast


@pytest.mark.parametrize("structure", STRUCTURES)
def test_variation_keeps_genomes_valid_and_small(structure):
    cfg = VariationConfig(structure=structure, max_nodes=12, max_depth=6)
    rng = random.Random(0)
    pop = [random_genome(rng, cfg) for _ in range(20)]
    for _ in range(200):
        a, b = rng.sample(pop, 2)
        child = mutate(a, rng, cfg) if rng.random() < 0.5 else crossover(a, b, rng, cfg)[0]
        e = validate(child, cfg) and to_expr(child, cfg)
        if structure == "free":
            assert size(e) <= 12 and depth(e) <= 6
        pop[rng.randrange(len(pop))] = child
    changed = sum(mutate(g, random.Random(i), cfg) != g for i, g in enumerate(pop))
    assert changed >= 18  # a mutant differs from its parent


@pytest.mark.parametrize("structure", STRUCTURES)
def test_variation_is_deterministic_under_a_seed(structure):
    cfg = VariationConfig(structure=structure)

    def walk(seed):
        rng = random.Random(seed)
        g = random_genome(rng, cfg)
        out = [g]
        for _ in range(30):
            g = mutate(g, rng, cfg)
            out.append(g)
        return out
    assert walk(3) == walk(3) and walk(3) != walk(4)


def test_tree_mutation_resamples_genes_and_crossover_mixes_parents():
    cfg = VariationConfig(structure="autoprox_tree", leaves=("t2", "t4g", "t3"))
    a = ["t2", "t4g", "min_max_normalize", "frobenius_norm", "sigmoid", "sqrt", "element_wise_sum"]
    b = ["t3", "t3", "abs", "abs", "abs", "abs", "element_wise_difference"]
    c1, c2 = crossover(a, b, random.Random(0), cfg)
    assert all(x in (p, q) for x, p, q in zip(c1, a, b)) and all({x, y} == {p, q} for x, y, p, q in zip(c1, c2, a, b))
    assert str(to_expr(a, cfg)) == str(resolve_proxy("autoprox_paper").expr)


@pytest.mark.parametrize("bad,msg", [
    (dict(structure="tree"), "structure"), (dict(unary=("element_wise_sum",)), "binary op"),
    (dict(leaves=("num_params",)), "single_leaves"), (dict(leaves=("nope",)), "unknown statistic"),
    (dict(max_nodes=2), "max_nodes"),
])
def test_bad_variation_config(bad, msg):
    with pytest.raises(ValueError, match=msg):
        VariationConfig(**bad)


def test_validate_names_the_problem():
    with pytest.raises(GraphError, match="7 gene"):
        validate(["t2"], VariationConfig(structure="autoprox_tree"))
    with pytest.raises(GraphError, match="per-layer"):
        validate(["sqrt(weight)"], VariationConfig())


def test_split3_is_disjoint_covering_and_seeded():
    f = split3(100, 0.2, 0.2, 0)
    assert [len(f[k]) for k in ("train", "val", "test")] == [60, 20, 20]
    assert sorted(np.concatenate(list(f.values())).tolist()) == list(range(100))
    assert all(np.array_equal(f[k], split3(100, 0.2, 0.2, 0)[k]) for k in f)
    assert not np.array_equal(f["val"], split3(100, 0.2, 0.2, 1)["val"])


def _known_objective(jcm_variant="mean_tau") -> Objective:
    obj = Objective.__new__(Objective)
    obj.cfg = ObjectiveConfig(jcm=jcm_variant)
    y = np.arange(12, dtype=float)
    obj.spaces = [SpaceData("pit", [{}] * 12, {"a": y, "b": y[::-1].copy()[::-1]}, split3(12, 0.25, 0.25, 0))]
    return obj


def test_record_orients_on_train_and_keeps_the_sign():
    obj = _known_objective()
    y = np.arange(12, dtype=float)
    r = obj.record({"pit": y})
    assert r["sign"] == 1 and r["train"] == pytest.approx(1.0) and r["val"] == pytest.approx(1.0)
    r = obj.record({"pit": -y})
    assert r["sign"] == -1 and r["train"] == pytest.approx(1.0) and r["test"] == pytest.approx(1.0)
    noisy = y.copy()
    val = obj.spaces[0].folds["val"]
    noisy[val] = -noisy[val]  # reversed on validation only: the train sign must be kept there
    r = obj.record({"pit": noisy})
    assert r["train"] == pytest.approx(1.0) and r["val"] == pytest.approx(-1.0)
    for bad in (np.full(12, 3.0), np.where(y > 5, np.nan, y)):
        r = obj.record({"pit": bad})
        assert r["train"] == INVALID and r["val"] is None and r["reason"]


def test_ranking_fingerprint_merges_monotone_variants_only():
    obj = _known_objective()
    y = np.arange(12, dtype=float) + 1.0
    r = obj.record({"pit": y})
    assert obj.record({"pit": np.log(y)})["ranking"] == r["ranking"]  # same order of the archs
    assert obj.record({"pit": -1.0 / y})["ranking"] == r["ranking"]
    assert obj.record({"pit": -y})["ranking"] == r["ranking"]  # oriented: the sign is undone
    swapped = y.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert obj.record({"pit": swapped})["ranking"] != r["ranking"]


def test_selection_keeps_one_individual_per_ranking():
    from autoprox.discovery.loop import _best_unique
    _, Individual = make_types()
    inds = []
    for h, ranking, fit in (("a", "r1", 0.5), ("b", "r1", 0.6), ("c", "r2", 0.4), ("d", None, 0.3)):
        i = Individual([h])
        i.record = {"hash": h, "ranking": ranking}
        i.fitness.values = (fit,)
        inds.append(i)
    assert [i.record["hash"] for i in _best_unique(inds, 3)] == ["b", "c", "d"]


@pytest.fixture(scope="module")
def tiny_objective(tmp_path_factory, tiny_batch_cfg):
    from autoprox.stats.provider import ScoringConfig
    from autoprox.stats.base import StatsConfig
    scoring = ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                            cache_dir=str(tmp_path_factory.mktemp("evo-cache")))
    return ObjectiveConfig(spaces=("pit",), limit=12, val_fraction=0.25, test_fraction=0.25, scoring=scoring)


def _cfg(obj, **kw):
    var = VariationConfig(leaves=("weight", "weight_grad", "linear_input", "norm_output_grad"),
                          single_leaves=("num_params",), max_nodes=10)
    base = dict(population=6, steps=2, offspring=6, hall_of_fame=4, seed_proxies=("snip",), objective=obj,
                variation=var)
    return EvolveConfig(**{**base, **kw})


def _outputs(d):
    """A run's results, without wall-clock figures and the run's folder name."""
    ck = json.loads((d / "checkpoint.json").read_text())
    for k in ("elapsed", "progress"):
        ck.pop(k)
    best = yaml.safe_load((d / "best.yaml").read_text())
    best.pop("name")
    return ck, best, [(d / n).read_text() for n in ("history.jsonl", "hall_of_fame.yaml")]


@pytest.mark.parametrize("mode", ["generational", "paper"])
def test_evolve_writes_a_reproducible_run(mode, tiny_objective, tmp_path):
    cfg = _cfg(tiny_objective, mode=mode, mutants=2, max_tries=2, pool_ratio=0.5, top_k=2)
    run = evolve(cfg, tmp_path / "run")
    d = tmp_path / "run"
    for f in ("config.yaml", "progress.csv", "jcm.png", "best_vs_accuracy.png", "summary.md"):
        assert (d / f).stat().st_size > 0
    for f in ("jcm.png", "best_vs_accuracy.png"):
        assert_png(d / f)
    hist = [json.loads(ln) for ln in (d / "history.jsonl").read_text().splitlines()]
    assert len(hist) == len({h["hash"] for h in hist}) == run.evals
    pick = run.pick().record
    hof = yaml.safe_load((d / "hall_of_fame.yaml").read_text())
    assert pick["val"] == max(h["val"] for h in hof if h["val"] is not None)
    # best.yaml reloads, and its score ranks the validation archs as recorded
    best = resolve_proxy(str(d / "best.yaml"))
    run.obj.open()
    try:
        scores = run.obj.scores([str(best.expr)])["pit"][0]
    finally:
        run.obj.close()
    sd = run.obj.spaces[0]
    assert run.obj.record({"pit": scores})["val"] == pytest.approx(pick["val"])
    assert run.obj.record({"pit": scores})["sign"] == 1  # the negation, if any, is inside best.yaml
    again = evolve(cfg, tmp_path / "again")
    assert _outputs(d) == _outputs(tmp_path / "again")
    assert len(sd.folds["val"]) == 3


def test_progress_reports_train_jcm_and_fitness_apart_under_the_beyond_size_reward(tiny_objective, tmp_path):
    """With ``beyond_size`` the fitness is JCM + reward: progress keeps the train JCM as ``best_train``
    and the fitness as ``best_fitness``, each the population's maximum."""
    run = evolve(_cfg(replace(tiny_objective, beyond_size=2.0)), tmp_path / "b")
    valid = [i for i in run.population if i.record.get("reason") is None]
    s = run.summary()
    assert s["best_train"] == max(i.record["train"] for i in valid) <= 1.0
    assert s["best_fitness"] == max(i.fitness.values[0] for i in valid) == max(i.record["fitness"] for i in valid)
    assert s["best_fitness"] != s["best_train"]
    last = list(csv.DictReader((tmp_path / "b" / "progress.csv").open()))[-1]
    assert (float(last["best_train"]), float(last["best_fitness"])) == pytest.approx((s["best_train"], s["best_fitness"]))


@pytest.mark.parametrize("rule, want", [("val", "b"), ("train_val", "a")])
def test_pick_rule_chooses_among_the_hall_of_fame(rule, want):
    """``val``: best validation JCM. ``train_val``: best JCM over 60 train + 20 validation archs,
    (60 * train + 20 * val) / 80: a = 0.75, b = 0.625, c (no validation figure) never."""
    from types import SimpleNamespace as NS
    from autoprox.discovery.loop import Run
    hof = [NS(record={"name": n, "train": t, "val": v}) for n, t, v in
           (("a", 0.80, 0.60), ("b", 0.60, 0.70), ("c", 0.95, None))]
    run = NS(hof=hof, cfg=NS(pick=rule), obj=NS(spaces=[NS(folds={"train": range(60), "val": range(20)})]))
    assert Run.pick(run).record["name"] == want
    with pytest.raises(ConfigError, match="pick must be one of"):
        EvolveConfig(pick="test")


def test_resume_after_a_kill_ends_like_an_unbroken_run(tiny_objective, tmp_path):
    cfg = _cfg(tiny_objective, steps=3)
    evolve(cfg, tmp_path / "whole")

    class Kill(Exception):
        pass

    def die(row):
        if row["step"] == 1:
            raise Kill
    with pytest.raises(Kill):
        evolve(cfg, tmp_path / "broken", on_step=die)
    with open(tmp_path / "broken" / "history.jsonl", "a") as f:  # a kill mid-step leaves extra lines
        f.write('{"hash": "partial"}\n')
    evolve(cfg, tmp_path / "broken", resume=True)
    assert _outputs(tmp_path / "whole") == _outputs(tmp_path / "broken")


def test_evolve_refuses_to_clobber_or_mix_runs(tiny_objective, tmp_path):
    cfg = _cfg(tiny_objective, steps=0)
    evolve(cfg, tmp_path / "r")
    with pytest.raises(ConfigError, match="--resume"):
        evolve(cfg, tmp_path / "r")
    with pytest.raises(ConfigError, match=r"config differs.*: seed: 0 \(saved\) vs 1 \(now\)$"):
        evolve(replace(cfg, seed=1), tmp_path / "r", resume=True)
    with pytest.raises(ConfigError, match="config differs"):
        evolve(replace(cfg, pick="train_val"), tmp_path / "r", resume=True)
    # a checkpoint written before a config key existed resumes with the key's default
    ck = json.loads((tmp_path / "r" / "checkpoint.json").read_text())
    del ck["config"]["pick"]
    (tmp_path / "r" / "checkpoint.json").write_text(json.dumps(ck))
    assert evolve(cfg, tmp_path / "r", resume=True).step_no == 0
    # the statistics cache may move between a kill and the resume
    moved = replace(cfg.objective.scoring, cache_dir=str(tmp_path / "elsewhere"))
    assert evolve(replace(cfg, objective=replace(cfg.objective, scoring=moved)), tmp_path / "r",
                  resume=True).step_no == 0
    # killed before its first checkpoint (a stale temporary left behind): --resume starts afresh
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / ".checkpoint.json.x.tmp").write_text("half")
    fresh = evolve(cfg, tmp_path / "k", resume=True)
    assert fresh.step_no == 0 and (tmp_path / "k" / "checkpoint.json").is_file()
    assert not list((tmp_path / "k").glob(".*.tmp"))
    assert (tmp_path / "k" / "history.jsonl").read_text() == (tmp_path / "r" / "history.jsonl").read_text()


def test_resuming_a_reported_run_bootstraps_only_the_baselines(tiny_objective, tmp_path):
    cfg = _cfg(tiny_objective, steps=1)
    first = evolve(cfg, tmp_path / "r")
    assert len(first.report["zoo"]) > 2
    (tmp_path / "r" / "summary.md").write_text("kept")
    again = evolve(cfg, tmp_path / "r", resume=True)  # a --cv gather: nothing rewritten, intervals for the baselines
    assert set(again.report["intervals"]) == {"n_boot", "pick", "params", "depth_width", "pick_vs_depth_width"}
    assert len(first.report["intervals"]) > 5 and again.report["zoo"] == first.report["zoo"]
    assert all(np.array_equal(again.report["inputs"][k][s], first.report["inputs"][k][s])
               for k in first.report["inputs"] for s in first.report["inputs"][k])
    assert again.report["pick"] == first.report["pick"] and (tmp_path / "r" / "summary.md").read_text() == "kept"
    assert all(np.array_equal(again.report["scores"][k][s], first.report["scores"][k][s])
               for k in first.report["scores"] for s in first.report["scores"][k])
    # outputs older than the last step (killed while writing the report) are written again
    rows = (tmp_path / "r" / "progress.csv").read_text().splitlines()
    (tmp_path / "r" / "progress.csv").write_text("\n".join(rows[:-1]) + "\n")
    evolve(cfg, tmp_path / "r", resume=True)
    assert (tmp_path / "r" / "summary.md").read_text() != "kept"
    assert (tmp_path / "r" / "progress.csv").read_text().splitlines() == rows


def test_hall_of_fame_reads_from_the_checkpoint_of_a_cut_run(tiny_objective, tmp_path):
    from autoprox.discovery.report import read_hall_of_fame
    cfg = _cfg(tiny_objective, steps=1)
    evolve(cfg, tmp_path / "r")
    written = read_hall_of_fame(tmp_path / "r", cfg.variation)
    (tmp_path / "r" / "hall_of_fame.yaml").unlink()  # as if killed before the report
    rebuilt = read_hall_of_fame(tmp_path / "r", cfg.variation)
    assert [(r["hash"], r["val"]) for r in rebuilt] == [(r["hash"], r["val"]) for r in written]
    assert len(written) > 1


def test_make_types_is_idempotent():
    assert make_types() == make_types()
    fit_cls, ind_cls = make_types()
    ind = ind_cls(["num_params"])
    ind.fitness.values = (0.5,)
    assert ind.fitness.valid and list(ind) == ["num_params"]


def test_cli_evolve(tiny_objective, tmp_path, capsys):
    cfg = _cfg(tiny_objective, steps=1)
    save_config(cfg, tmp_path / "tiny.yaml")
    assert main(["evolve", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "o")]) == 0
    assert "picked on validation" in capsys.readouterr().out
    assert main(["evolve", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "o"), "--resume"]) == 0
    assert capsys.readouterr().out.endswith("/o/ was finished and written before; nothing rewritten\n")
    assert main(["bench", "--space", "pit", "--proxy", str(tmp_path / "o" / "best.yaml"), "--limit", "12",
                 "--out", str(tmp_path / "b"), "--batch-size", "4", "--resolution", "32", "--num-classes", "10",
                 "--cache-dir", tiny_objective.scoring.cache_dir]) == 0
    (tmp_path / "bad.yaml").write_text("population: 4\npopulaton: 5\n")
    assert main(["evolve", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown key" in capsys.readouterr().err
    with pytest.raises(GraphError):
        parse("agg_sum(nope)")


@pytest.mark.ray
def test_two_spaces_on_ray_score_like_serial(tiny_objective):
    """Each space's Ray workers are started before any is waited on; the matrices match serial."""
    cfg = replace(tiny_objective, spaces=("pit", "autoformer"), limit=8)
    exprs = ["agg_sum(abs(weight))", "agg_mean(to_mean_scalar(sigmoid(linear_input)))"]
    got = {}
    for backend in ("serial", "ray"):
        obj = Objective(cfg, ["weight", "linear_input"], backend=backend, workers=1)
        obj.open()
        try:
            got[backend] = obj.scores(exprs)
        finally:
            obj.close()
    for space in cfg.spaces:
        assert got["ray"][space].shape == (2, 8) and np.isfinite(got["ray"][space]).all()
        np.testing.assert_allclose(got["ray"][space], got["serial"][space], rtol=1e-6)
    import ray
    assert not ray.is_initialized()  # the Ray session the objective started is shut down


def test_the_recent_statistics_are_leaves_evolution_reads(tiny_objective, tmp_path):
    """The 2023-2025 proxies' families (per layer and one per arch) as leaves: a run computes their passes,
    and the genomes it scores read them."""
    var = VariationConfig(leaves=("token_entropy", "meco", "norm_stable_rank", "block_expressivity"),
                          single_leaves=("swap_patterns", "zen_score", "epe_nas"), max_nodes=10)
    run = evolve(EvolveConfig(population=6, steps=1, offspring=6, hall_of_fame=4, seed_proxies=("meco",),
                              objective=tiny_objective, variation=var), tmp_path / "r")
    text = (tmp_path / "r" / "history.jsonl").read_text()
    hist = [json.loads(ln) for ln in text.splitlines()]
    assert len(hist) == run.evals >= 6
    read = {f for f in var.leaves + var.single_leaves if f in text}
    assert len(read) >= 4, read
    assert np.isfinite(run.pick().record["train"])


def test_a_seed_reading_a_statistic_outside_the_leaves_is_scored(tiny_objective, tmp_path):
    """``runs/autoformer.yaml`` seeds ``jacov``, whose logit-Jacobian statistic is in its own pass and
    not among the default leaves: the run computes that pass too (it used to stop after the
    statistics phase: "statistic 'logit_jacobian_corr' not available")."""
    var = VariationConfig()
    assert "logit_jacobian_corr" not in var.leaves + var.single_leaves
    evolve(EvolveConfig(population=4, steps=0, offspring=4, hall_of_fame=2, seed_proxies=("jacov", "snip"),
                          objective=tiny_objective, variation=var), tmp_path / "r")
    hist = [json.loads(ln) for ln in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    seeded = [h for h in hist if "logit_jacobian_corr" in json.dumps(h)]
    assert seeded and all(np.isfinite(h["train"]) for h in seeded), seeded


def test_a_run_that_cannot_pick_says_so_and_claims_no_best_yaml(tiny_objective, tmp_path, capsys, monkeypatch):
    """No member with a validation JCM (all NaN there, say; forced here): the run says there is no pick
    and lists only the files it wrote."""
    import autoprox.discovery.loop as loop
    monkeypatch.setattr(loop, "pick_index", lambda records, rule, spaces: None)
    save_config(_cfg(tiny_objective, steps=0), tmp_path / "tiny.yaml")
    assert main(["evolve", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "no pick" in out and not (tmp_path / "o" / "best.yaml").exists()
    wrote = out.split("wrote ", 1)[1]
    assert "best.yaml" not in wrote and "config.yaml" in wrote  # what exists, and only that
