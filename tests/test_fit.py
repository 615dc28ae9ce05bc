"""``weighted_rank`` fused proxies and ``autoprox fit``: a ranker fitted on a few labelled archs becomes
a proxy file that bench, search and export take."""
import importlib.util

import numpy as np
import pytest
from scipy.stats import kendalltau, rankdata

from autoprox.eval import alternatives as alt
from autoprox.eval.bench import BenchConfig, score_bench
from autoprox.eval.fit import fit_proxy, ranker_inputs, ranker_proxy
from autoprox.proxy.export import export, load_proxy
from autoprox.proxy.graph import GraphError
from autoprox.proxy.spec import resolve
from tests.test_native_bench import native_records, write


def test_weighted_rank_is_the_weighted_sum_of_ranks_over_the_finite_archs():
    p = resolve("weighted_rank(0.5, -2)[num_params | depth]")
    assert [str(q.expr) for q in p.parts] == ["depth", "num_params"] and p.weights == (-2.0, 0.5)
    m = np.array([[3.0, 1.0, np.nan, 2.0, 2.0], [10.0, 40.0, 5.0, 30.0, 20.0]])  # depth row, num_params row
    ok = ~np.isnan(m).any(axis=0)
    want = np.full(5, np.nan)
    want[ok] = -2 * rankdata(m[0, ok]) / ok.sum() + 0.5 * rankdata(m[1, ok]) / ok.sum()
    np.testing.assert_allclose(p.combine(m), want)
    assert np.all(np.argsort(p.negated().combine(m)[ok]) == np.argsort(-p.combine(m)[ok]))
    same = resolve("weighted_rank(-2, 0.5)[depth | num_params]")  # the order of writing does not matter
    assert same.hash == p.hash and same.text == p.text
    assert resolve("weighted_rank(-2, 0.6)[depth | num_params]").hash != p.hash
    with pytest.raises(ValueError, match="one weight per part"):
        resolve("weighted_rank(1)[depth | num_params]")
    with pytest.raises(ValueError, match="takes no weights"):
        resolve("rank_sum(1, 2)[depth | num_params]")


def test_weighted_rank_files_round_trip_and_detect_edits(tmp_path):
    p = resolve("weighted_rank(0.25, -0.125)[num_params | agg_sum(snip_saliency)]")
    f = tmp_path / "r.yaml"
    f.write_text(export(p, "yaml"))
    back = load_proxy(f)
    assert back.hash == p.hash and back.weights == p.weights and back.fusion == "weighted_rank"
    text = export(p, "text")
    assert text == "weighted_rank(-0.125 * rank(agg_sum(snip_saliency)); 0.25 * rank(num_params))\n"
    f.write_text(f.read_text().replace("- -0.125", "- -0.5"))
    with pytest.raises(GraphError, match="it was edited"):
        load_proxy(f)


def test_exported_python_fuses_with_the_weights(tmp_path):
    p = resolve("weighted_rank(0.5, -2)[num_params | depth]")
    path = tmp_path / "r.py"
    path.write_text(export(p, "python"))
    spec = importlib.util.spec_from_file_location("r", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import torch
    m = np.array([[3.0, 1.0, 2.0, 4.0], [10.0, 40.0, 30.0, 20.0]])
    assert mod.WEIGHTS == p.weights
    np.testing.assert_allclose(mod.FUSIONS[mod.FUSION](torch.tensor(m), mod.WEIGHTS).numpy(), p.combine(m))


def test_ranker_proxy_merges_inputs_that_are_one_expression():
    p = ranker_proxy(["params", "num_params", "depth"], np.array([0.5, 0.25, -1.0]), "r", "")
    assert dict(zip((str(q.expr) for q in p.parts), p.weights)) == {"num_params": 0.75, "depth": -1.0}


def test_fit_scores_its_labelled_archs_as_the_ridge_does(tmp_path, tiny_scoring):
    recs = native_records("autoformer-tiny", 14, seed=3)
    for r in recs.values():  # accuracy that grows with depth, plus a little of the width
        ns = r["net_setting"]
        r["performance"]["Imagenet"]["clean"] = 60 + ns["layer_num"] + 0.01 * ns["embed_dim"][0]
    cfg = BenchConfig(space="autoformer-tiny", bench=write(tmp_path, recs, "mine.json"), scoring=tiny_scoring)
    proxy, info = fit_proxy(cfg, "ranker", ("base",))
    assert info["archs"] == 14 and info["targets"] == ["imagenet"] and info["inputs"] == len(ranker_inputs(["base"]))
    assert "features" not in {f for q in proxy.parts for f in q.families} and "token_entropy" not in proxy.text
    # the proxy file ranks the archs exactly as the fitted ridge predicts them
    f = tmp_path / "r.yaml"
    f.write_text(export(proxy, "yaml"))
    _, by_name, bench, archs, _ = score_bench(BenchConfig(space="autoformer-tiny", bench=cfg.bench, proxies=(str(f),),
                                                          scoring=tiny_scoring))
    inputs = ranker_inputs(["base"])
    _, scores, *_ = score_bench(BenchConfig(space="autoformer-tiny", bench=cfg.bench, proxies=tuple(inputs),
                                            scoring=tiny_scoring))
    part = alt.Part(scores, {"imagenet": bench.values("imagenet")}, archs)
    x, y = alt.features(part, inputs), alt.target_rank(part)
    ridge = alt.predict(alt.ridge(x, y, info["alpha"]), x)
    assert kendalltau(by_name[proxy.name], ridge)[0] == pytest.approx(1.0)
    assert info["in_sample"] == pytest.approx(kendalltau(ridge, bench.values("imagenet"))[0])
    assert info["in_sample"] > 0.8


def test_cli_fit_refuses_too_few_archs_and_a_non_yaml_out(tmp_path, capsys):
    from autoprox.cli.main import main
    path = write(tmp_path, native_records("autoformer-tiny", 6), "few.json")
    assert main(["fit", "--space", "autoformer-tiny", "--bench", path, "--out", str(tmp_path / "r.txt")]) == 2
    assert "a proxy file ends in .yaml" in capsys.readouterr().err
    assert main(["fit", "--space", "autoformer-tiny", "--bench", path, "--pass", "features",
                 "--out", str(tmp_path / "r.yaml")]) == 2
    assert "at least 10 labelled archs" in capsys.readouterr().err and not (tmp_path / "r.yaml").exists()


def test_weighted_rank_hash_sees_every_digit_and_not_the_order_of_equal_parts():
    a = resolve("weighted_rank(0.1234564, 1)[depth | num_params]")
    assert a.hash != resolve("weighted_rank(0.1234561, 1)[depth | num_params]").hash
    assert resolve(a.text).weights == a.weights  # the text keeps every digit
    assert resolve("weighted_rank(1, 2)[depth | depth]").hash == resolve("weighted_rank(2, 1)[depth | depth]").hash


def test_fit_leaves_out_an_input_undefined_on_a_labelled_arch(tmp_path, monkeypatch):
    import autoprox.eval.fit as fit_mod
    recs = native_records("autoformer-tiny", 12, seed=1)
    cfg = BenchConfig(space="autoformer-tiny", bench=write(tmp_path, recs, "mine.json"))
    bench, archs, _ = fit_mod.load_archs("autoformer-tiny", cfg.bench)
    rng = np.random.default_rng(0)
    def fake(c, *a, **k):  # every input random, one NaN on one arch
        by = {n: rng.standard_normal(12) for n in c.proxies}
        by["snip"][3] = np.nan
        return list(c.proxies), by, bench, archs, ["imagenet"]
    monkeypatch.setattr(fit_mod, "score_bench", fake)
    proxy, info = fit_proxy(cfg)
    assert "snip_saliency" not in proxy.text and np.isfinite(info["in_sample"])
    assert info["inputs"] == len(ranker_inputs(["base", "features"])) - 1
