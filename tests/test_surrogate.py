"""Arch surrogates as proxy files: ``autoprox fit --model surrogate | zc-surrogate`` writes one, and
bench, search, export and the Python API score with it exactly as the fitted ridge predicts."""
import random

import numpy as np
import pytest
from scipy.stats import kendalltau

from autoprox.archsearch.config import SearchConfig
from autoprox.archsearch.run import rank_archs, search
from autoprox.data.benchmark import load_archs
from autoprox.eval import alternatives as alt
from autoprox.eval.bench import BenchConfig, score_bench
from autoprox.eval.fit import fit_proxy, ranker_inputs
from autoprox.proxy.export import export, load_proxy
from autoprox.proxy.graph import GraphError, GraphProxy
from autoprox.proxy.spec import resolve, resolve_graph
from autoprox.proxy.surrogate import ArchSurrogate, columns_of, one_hot, one_hot_fields
from tests.test_native_bench import native_records, write

ARCHS = [{"d": 13, "e": [192, 216]}, {"d": 12, "e": [216, 216, 240]}, {"d": 12, "e": [192]}]


def _labelled(tmp_path, n=16, seed=3) -> str:
    recs = native_records("autoformer-tiny", n, seed=seed)
    for r in recs.values():  # accuracy that grows with depth and with the first layer's MLP ratio
        ns = r["net_setting"]
        r["performance"]["Imagenet"]["clean"] = 60 + ns["layer_num"] + 2 * float(ns["mlp_ratio"][0])
    return write(tmp_path, recs, "mine.json")


def zc_inputs(bench_file: str, scoring) -> tuple[np.ndarray, np.ndarray]:
    """What a zc model is fitted on, computed here from the bench's own scores: (one-hot columns, then
    the within-benchmark ranks of the zoo scores finite on every arch; the target rank)."""
    zoo = [n for n in ranker_inputs(["base"]) if n not in alt.SCALARS]
    names, scores, bench, archs, _ = score_bench(BenchConfig(space="autoformer-tiny", bench=bench_file,
                                                             proxies=tuple(zoo), scoring=scoring))
    zoo = [n for n in zoo if np.isfinite(scores[n]).all()]
    part = alt.Part(scores, {"imagenet": bench.values("imagenet")}, archs)
    return np.concatenate([one_hot(archs, one_hot_fields(archs)), alt.features(part, zoo)], axis=1), alt.target_rank(part)


def test_a_surrogate_scores_the_weights_of_the_columns_an_arch_has():
    fields = one_hot_fields(ARCHS)
    cols = columns_of(fields)
    assert cols == [("d", None, 12), ("d", None, 13), ("e", 0, 192), ("e", 0, 216), ("e", 1, 216), ("e", 1, None),
                    ("e", 2, 240), ("e", 2, None)]
    s = ArchSurrogate("s", tuple(cols), tuple(float(i) for i in range(len(cols))), 0.5)
    np.testing.assert_allclose(s.combine(np.zeros((0, 3)), ARCHS), one_hot(ARCHS, fields) @ np.arange(8) + 0.5)
    assert list(s.combine(np.zeros((0, 3)), ARCHS)) == [0.5 + 1 + 2 + 4 + 7, 0.5 + 0 + 3 + 4 + 6, 0.5 + 0 + 2 + 5 + 7]
    assert list(s.combine(np.zeros((0, 1)), [{"d": 14, "e": [200]}])) == [0.5 + 5 + 7]  # unseen values: no column
    assert not s.fused and s.families == frozenset()
    np.testing.assert_allclose(s.negated().combine(np.zeros((0, 3)), ARCHS), -s.combine(np.zeros((0, 3)), ARCHS))
    with pytest.raises(ValueError, match="reads the archs' choices"):
        s.combine(np.zeros((0, 3)))


def test_surrogate_columns_are_checked_and_put_in_one_order():
    a = ArchSurrogate("a", (("d", None, 12), ("e", 0, 192)), (1.0, 2.0))
    b = ArchSurrogate("b", (("e", 0, 192), ("d", None, 12)), (2.0, 1.0))
    assert a.text == b.text and a.hash == b.hash
    assert ArchSurrogate("c", (("d", None, 12), ("e", 0, 192)), (1.0, 2.0000001)).hash != a.hash
    for cols, weights, match in [((("d", -1, 12),), (1.0,), "layer"), ((("d", None, [1]),), (1.0,), "value"),
                                 ((("d", None, 12),), (float("nan"),), "finite"), ((("d", None, 12),), (), "one weight"),
                                 ((("d", None, 12), ("d", None, 12)), (1.0, 1.0), "twice"), ((), (), "at least one")]:
        with pytest.raises(ValueError, match=match):
            ArchSurrogate("x", cols, weights)


def test_surrogate_files_round_trip_detect_edits_and_export(tmp_path):
    s = ArchSurrogate("s", (("depth", None, 12), ("mlp_ratio", 0, 4.0), ("mlp_ratio", 2, None)), (0.25, -0.5, 1.5), 0.1,
                      description="made up")
    f = tmp_path / "s.yaml"
    f.write_text(export(s, "yaml"))
    back = resolve(str(f))
    assert isinstance(back, ArchSurrogate) and back.hash == s.hash and back.columns == s.columns
    assert "- [mlp_ratio, 2, null, 1.5]" in f.read_text()
    assert export(s, "text") == "0.1 + 1.5 * [no mlp_ratio[2]] - 0.5 * [mlp_ratio[0] = 4.0] + 0.25 * [depth = 12]\n"
    assert r"\mathrm{mlp\_ratio[0]} = 4.0" in export(s, "latex")
    ns: dict = {}
    exec(compile(export(s, "python"), "s.py", "exec"), ns)  # a standalone file: no import at all
    archs = [{"depth": 12, "mlp_ratio": [4.0, 3.5]}, {"depth": 13, "mlp_ratio": [3.5, 3.5, 4.0]}]
    assert ns["score_population"](archs) == list(s.combine(np.zeros((0, 2)), archs)) == [0.1 + 0.25 - 0.5 + 1.5, 0.1]
    f.write_text(f.read_text().replace("1.5]", "1.25]"))
    with pytest.raises(GraphError, match="it was edited"):
        load_proxy(f)
    f.write_text("columns: [[depth, null, 12]]\n")
    with pytest.raises(GraphError, match=r"s.yaml: 'columns' must list \[field, layer, value, weight\]"):
        load_proxy(f)
    with pytest.raises(ValueError, match="is an arch surrogate"):
        resolve_graph(s)
    zc = ArchSurrogate("zc", (("depth", None, 12),), (1.0,), parts=(GraphProxy.from_text("p", "num_params"),),
                       part_weights=(2.0,))
    assert zc.fused and "rank(num_params)" in export(zc, "text")
    with pytest.raises(ValueError, match="export text, latex or yaml"):
        export(zc, "python")


def test_fit_surrogate_ranks_as_the_ridge_and_needs_no_statistics(tmp_path, tiny_scoring):
    cfg = BenchConfig(space="autoformer-tiny", bench=_labelled(tmp_path), scoring=tiny_scoring)
    proxy, info = fit_proxy(cfg, "surrogate")
    assert isinstance(proxy, ArchSurrogate) and not proxy.fused and info["archs"] == 16
    bench, archs, _ = load_archs("autoformer-tiny", cfg.bench)
    x, y = one_hot(archs, one_hot_fields(archs)), alt.within_ranks(bench.values("imagenet"))
    ridge = alt.predict(alt.ridge(x, y, info["alpha"]), x)
    f = tmp_path / "s.yaml"
    f.write_text(export(proxy, "yaml"))
    _, by_name, *_ = score_bench(BenchConfig(space="autoformer-tiny", bench=cfg.bench, proxies=(str(f),),
                                             scoring=tiny_scoring))
    np.testing.assert_allclose(by_name[proxy.name], ridge, atol=1e-9)
    assert info["in_sample"] == pytest.approx(kendalltau(ridge, bench.values("imagenet"))[0]) and info["in_sample"] > 0.8
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.st"))
    # one arch, one score: alone, in a population and in a search
    for i in (0, 5):  # the same bits alone as among the others, and in the standalone export
        alone = rank_archs(str(f), "autoformer-tiny", archs[i:i + 1], scoring=tiny_scoring)
        assert alone[0]["score"] == by_name[proxy.name][i]
    ns: dict = {}
    exec(compile(export(proxy, "python"), "s.py", "exec"), ns)
    assert ns["score_population"](archs) == list(by_name[proxy.name])
    res = search(SearchConfig(proxy=str(f), space="autoformer-tiny", budget=6, chunk=3, scoring=tiny_scoring))
    want = proxy.combine(np.zeros((0, len(res.history))), [h["arch"] for h in res.history])
    np.testing.assert_allclose([h["score"] for h in res.history], want)


def test_fit_zc_surrogate_adds_ranked_zoo_parts(tmp_path, tiny_scoring, monkeypatch):
    import autoprox.eval.fit as fit_mod
    monkeypatch.setattr(fit_mod, "list_proxies", lambda: ["grad_norm", "snip", "synflow", "params"])  # fast ones
    cfg = BenchConfig(space="autoformer-tiny", bench=_labelled(tmp_path, 14, seed=5), scoring=tiny_scoring)
    proxy, info = fit_proxy(cfg, "zc-surrogate", ("base",))
    assert proxy.fused and len(proxy.parts) == 4 and info["model"] == "zc-surrogate"
    x, y = zc_inputs(cfg.bench, tiny_scoring)
    ridge = alt.predict(alt.ridge(x, y, info["alpha"]), x)
    f = tmp_path / "zc.yaml"
    f.write_text(export(proxy, "yaml"))
    _, by_name, *_ = score_bench(BenchConfig(space="autoformer-tiny", bench=cfg.bench, proxies=(str(f),),
                                             scoring=tiny_scoring))
    np.testing.assert_allclose(by_name[proxy.name], ridge, atol=1e-9)
    with pytest.raises(ValueError, match="--bench-only"):  # fused: ranks its parts among the archs scored together
        search(SearchConfig(proxy=str(f), space="autoformer-tiny", budget=4, scoring=tiny_scoring))


def test_score_population_reads_the_archs_given(tiny_batch_cfg):
    import autoprox
    from autoprox.spaces import get_space
    sp = get_space("autoformer-tiny")
    archs = [sp.validate(a) for a in ARCHS_TINY]
    s = ArchSurrogate("s", (("depth", None, 12), ("mlp_ratio", 0, 4.0)), (1.0, 2.0), 0.5)
    models = [sp.build(a, num_classes=10, img_size=32) for a in archs]
    images, labels = autoprox.default_batch(size=2, resolution=32, num_classes=10)
    want = list(s.combine(np.zeros((0, 2)), archs))
    assert autoprox.score_population(models, images, labels, s, archs=archs, space="autoformer-tiny") == want
    assert autoprox.score(models[0], images, labels, s, arch=archs[0], space="autoformer-tiny") == want[0]
    with pytest.raises(ValueError, match="pass archs="):
        autoprox.score_population(models, images, labels, s)


ARCHS_TINY = [{"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12},
              {"hidden_dim": 216, "depth": 13, "mlp_ratio": [3.5] * 13, "num_heads": [4] * 13}]


def test_cli_fit_writes_a_surrogate_and_refuses_an_unknown_model(tmp_path, capsys):
    from autoprox.cli.main import main
    path = _labelled(tmp_path, 12)
    out = tmp_path / "s.yaml"
    assert main(["fit", "--space", "autoformer-tiny", "--bench", path, "--model", "oracle", "--out", str(out)]) == 2
    assert "unknown model 'oracle'" in capsys.readouterr().err and not out.exists()
    assert main(["fit", "--space", "autoformer-tiny", "--bench", path, "--model", "surrogate", "--out", str(out)]) == 0
    assert "surrogate on 12 labelled archs" in capsys.readouterr().out
    assert isinstance(load_proxy(out), ArchSurrogate) and load_proxy(out).name == "s"  # named after its file


def test_bench_refuses_two_proxies_of_one_name_and_keeps_one_given_twice(tmp_path, tiny_scoring):
    path = _labelled(tmp_path, 6)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(export(ArchSurrogate("mine", (("depth", None, 12),), (1.0,)), "yaml"))
    b.write_text(export(ArchSurrogate("mine", (("depth", None, 12),), (-1.0,)), "yaml"))
    with pytest.raises(ValueError, match="two different proxies are named 'mine'"):
        score_bench(BenchConfig(space="autoformer-tiny", bench=path, proxies=(str(a), str(b)), scoring=tiny_scoring))
    names, *_ = score_bench(BenchConfig(space="autoformer-tiny", bench=path, proxies=(str(a), str(a), "depth"),
                                        scoring=tiny_scoring))
    assert names == ["mine", "depth"]


def test_surrogate_files_are_read_as_surrogates_and_bad_ones_fail_in_one_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("parts: [num_params, depth]\npart_weights: [1.0, -2.0]\nintercept: 0.5\n")
    s = load_proxy(f)  # weighted parts and an intercept: a surrogate, not a plain rank sum
    assert isinstance(s, ArchSurrogate) and s.part_weights == (-2.0, 1.0) and s.intercept == 0.5
    for body, match in [("expression: depth\ncolumns: [[depth, null, 12, 1.0]]\n", r"takes no \['expression'\]"),
                        ("columns: [[depth, null, 12, 1%s]]\n" % ("0" * 400), "must be finite"),
                        ("columns: [[depth, null, true, 1.0]]\n", "value"),
                        ("columns: [[depth, null, 12, 1.0]]\nhash: abc\n", "it was edited")]:
        f.write_text(body)
        with pytest.raises(GraphError, match=match) as e:
            load_proxy(f)
        assert str(e.value).count(str(f)) == 1


def test_a_surrogate_is_no_evolution_seed_and_no_single_model_score_when_fused(tmp_path):
    import autoprox
    from autoprox.discovery.config import EvolveConfig, seed_genomes
    zc = ArchSurrogate("zc", (("depth", None, 12),), (1.0,), parts=(GraphProxy.from_text("p", "num_params"),),
                       part_weights=(2.0,))
    f = tmp_path / "zc.yaml"
    f.write_text(export(zc, "yaml"))
    with pytest.raises(ValueError, match="is an arch surrogate"):
        seed_genomes(EvolveConfig(seed_proxies=(str(f),)))
    with pytest.raises(ValueError, match="fuses its parts across archs"):
        autoprox.score(None, None, None, zc)


def test_bench_refuses_a_proxy_under_a_references_name(tmp_path, tiny_scoring):
    f = tmp_path / "params.yaml"  # what `fit --out params.yaml` would name its proxy
    f.write_text(export(ArchSurrogate("params", (("depth", None, 12),), (1.0,)), "yaml"))
    with pytest.raises(ValueError, match="two different proxies are named 'params'"):
        score_bench(BenchConfig(space="autoformer-tiny", bench=_labelled(tmp_path, 6), proxies=(str(f),),
                                scoring=tiny_scoring))


def test_a_surrogate_fitted_on_one_space_refuses_another_in_one_line(tmp_path, capsys, tiny_batch_cfg):
    import autoprox
    from autoprox.cli.main import main
    from autoprox.spaces import get_space
    path = _labelled(tmp_path, 12)
    out = tmp_path / "s.yaml"
    assert main(["fit", "--space", "autoformer-tiny", "--bench", path, "--model", "surrogate", "--out", str(out)]) == 0
    s = load_proxy(out)
    assert s.space == "autoformer-tiny" and "space: autoformer-tiny" in out.read_text()
    assert "on 'autoformer-tiny'" in s.text and ArchSurrogate(s.name, s.columns, s.weights, s.intercept).hash != s.hash
    out.write_text(out.read_text().replace("space: autoformer-tiny", "space: autoformer-small"))
    with pytest.raises(GraphError, match="edited"):  # the space is part of what the hash covers
        load_proxy(out)
    out.write_text(export(s, "yaml"))
    other = write(tmp_path, native_records("autoformer-small", 4, seed=1), "small.json")
    capsys.readouterr()
    assert main(["bench", "--space", "autoformer-small", "--bench", other, "--proxy", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fitted on autoformer-tiny archs" in err and "autoprox fit --space autoformer-small" in err
    assert len(err.splitlines()) == 1
    sp = get_space("autoformer-small")
    arch = sp.sample(random.Random(0))
    images, labels = autoprox.default_batch(size=2, resolution=32, num_classes=10)
    with pytest.raises(ValueError, match="cannot score autoformer-small archs"):
        autoprox.score(sp.build(arch, num_classes=10, img_size=32), images, labels, s, arch=arch,
                       space="autoformer-small")
    with pytest.raises(ValueError, match="cannot score autoformer-small archs"):
        rank_archs(str(out), "autoformer-small", [arch])
    assert len(rank_archs(str(out), "autoformer-tiny", [get_space("autoformer-tiny").validate(ARCHS_TINY[0])])) == 1

