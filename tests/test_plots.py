"""The plots of bench (scatter.png, jcm.png), search (scores.png) and evolve (jcm.png,
best_vs_accuracy.png): valid PNGs, and what they show equals the figures of the tables."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from autoprox.eval.bench import bench_rows, to_csv
from autoprox.eval.plots import (jcm_bars, jcm_figure, png_bytes, scatter_figure, scatter_panels, score_scale,
                                 tau_title)
from autoprox.discovery.report import progress_figure, scores_figure as evolve_scores_figure
from autoprox.archsearch.config import SearchConfig
from autoprox.archsearch.report import scores_figure
from autoprox.archsearch.run import search

from conftest import assert_png

PNG = b"\x89PNG\r\n\x1a\n"


class FakeBench:
    def __init__(self, values):
        self._v = values

    def values(self, t):
        return np.asarray(self._v[t], dtype=np.float64)


# ---------------------------------------------------------------------------------- bench
def test_scatter_title_shows_the_bench_tau():
    scores = np.array([[1.0, 2.0, 3.0, 4.0]])
    acc = {"c100_kd": [1.0, 2.0, 4.0, 3.0]}
    rows = bench_rows(["p"], scores, FakeBench(acc), ["c100_kd"], "mean_tau")
    [[panel]] = scatter_panels(rows, {"p": scores[0]}, {t: np.asarray(v) for t, v in acc.items()})
    assert panel["title"] == "c100_kd  τ=0.667" and panel["proxy"] == "p"
    assert "0.6667" in to_csv(rows).splitlines()[1]  # bench.csv's row holds the same tau
    assert list(panel["x"]) == [1, 2, 3, 4] and list(panel["y"]) == [1, 2, 4, 3]


def test_scatter_grid_is_proxies_by_targets():
    acc = {"a": [1.0, 2.0, 4.0, 3.0], "b": [4.0, 3.0, 2.0, 1.0]}
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 10.0, 1e3, 1e5]])
    rows = bench_rows(["p", "q"], scores, FakeBench(acc), ["a", "b"], "mean_tau")
    panels = scatter_panels(rows, {"p": scores[0], "q": scores[1]}, {t: np.asarray(v) for t, v in acc.items()})
    assert [[(pn["proxy"], pn["target"]) for pn in r] for r in panels] == [[("p", "a"), ("p", "b")],
                                                                           [("q", "a"), ("q", "b")]]
    assert panels[1][1]["title"] == tau_title("b", -1.0) == "b  τ=-1.000"
    fig = scatter_figure(panels)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [pn["title"] for r in panels for pn in r]
    assert axes[0].get_xscale() == "linear" and axes[2].get_xscale() == "log"  # q spans 5 decades
    assert "log scale" in axes[2].get_xlabel()


@pytest.mark.parametrize("values,scale", [([1, 2, 3], "linear"), ([1, 1e4, np.nan], "log"),
                                          ([-1e3, 1, 5], "symlog"), ([0, 0], "linear"), ([-5, -3], "linear")])
def test_score_scale(values, scale):
    assert score_scale(values)[0] == scale


def test_jcm_bars_are_the_jcm_rows_sorted():
    rows = [{"proxy": p, "dataset": "JCM", "n": 10, "kendall": k, "kendall_lo": k - 0.1, "kendall_hi": k + 0.05,
             "ceiling": 0.9} for p, k in [("a", 0.3), ("b", 0.6), ("c", float("nan")), ("d", -0.2)]]
    rows.insert(0, {"proxy": "a", "dataset": "t1", "n": 10, "kendall": 0.99})  # a per-target row: no bar
    assert [b["proxy"] for b in jcm_bars(rows)] == ["c", "d", "a", "b"]  # ascending: the best on top
    fig = jcm_figure(rows, params_jcm=0.45)
    ax = fig.get_axes()[0]
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([0.0, -0.2, 0.3, 0.6])  # an undefined JCM: an empty bar
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c (undefined)", "d", "a", "b"]
    lines = {ln.get_linestyle(): ln.get_xdata()[0] for ln in ax.get_lines()}
    assert lines["--"] == 0.9 and lines[":"] == 0.45  # ceiling dashed, #params dotted
    err = [c for c in ax.collections if c.get_segments()][0].get_segments()
    assert [tuple(s[:, 0]) for s in err[1:]] == [pytest.approx((-0.3, -0.15)), pytest.approx((0.2, 0.35)),
                                                 pytest.approx((0.5, 0.65))]


def test_bench_writes_its_plots(tmp_path):
    from scipy.stats import kendalltau
    from autoprox.eval.bench import BenchConfig, bench_to
    from autoprox.stats.provider import ScoringConfig
    out = tmp_path / "o"
    cfg = BenchConfig(space="pit", proxies=("params", "flops"), limit=6, scoring=ScoringConfig(cache_dir=str(tmp_path)))
    rows = bench_to(out, cfg)
    assert_png(out / "scatter.png", min_h=2 * 200)  # two rows of panels
    assert_png(out / "jcm.png")
    csv_tau = {(r["proxy"], r["dataset"]): float(r["kendall"]) for r in csv.DictReader(open(out / "bench.csv"))}
    table = list(csv.DictReader(open(out / "scores.csv")))
    col = (lambda k: np.array([float(r[k]) for r in table]))
    targets = [k for k in table[0] if k.endswith("_kd")]
    panels = scatter_panels(rows, {p: col(f"score_{p}") for p in cfg.proxies}, {t: col(t) for t in targets})
    assert [[pn["target"] for pn in r] for r in panels] == [targets, targets] and len(targets) == 3
    for pn in (pn for r in panels for pn in r):
        tau = float(pn["title"].split("τ=")[1])
        assert tau == pytest.approx(csv_tau[pn["proxy"], pn["target"]], abs=5e-4)
        assert tau == pytest.approx(kendalltau(pn["x"], pn["y"])[0], abs=5e-4)  # the points drawn give that tau


# ---------------------------------------------------------------------------------- search
def test_search_plot_stars_the_top_scoring_candidate(tmp_path, tiny_scoring):
    cfg = SearchConfig(proxy="params", space="pit", budget=8, chunk=4, top_k=3, scoring=tiny_scoring)
    res = search(cfg, tmp_path / "run")
    assert_png(tmp_path / "run" / "scores.png")
    ax = scores_figure(res).get_axes()[0]
    by = {c.get_label(): c.get_offsets() for c in ax.collections}
    best = max(res.history, key=lambda h: h["score"])
    assert by["pick (rank 1)"].tolist() == [[best["num_params"] / 1e6, best["score"]]]
    assert len(by["candidates (8)"]) == 8 and len(by["top 3"]) == 3
    assert sorted(by["top 3"][:, 1], reverse=True) == sorted((h["score"] for h in res.history), reverse=True)[:3]
    assert ax.get_title() == "search: proxy params on pit, 8 candidates"
    assert f"candidate {best['index']}" in ax.texts[0].get_text()


def test_search_without_out_writes_no_plot(tmp_path, tiny_scoring, monkeypatch):
    import autoprox.archsearch.report as rep
    monkeypatch.setattr(rep, "scores_figure", lambda res: pytest.fail("drawn without an output folder"))
    search(SearchConfig(proxy="params", space="pit", budget=4, chunk=4, scoring=tiny_scoring))


# ---------------------------------------------------------------------------------- evolve
def test_evolve_progress_integer_steps_and_params_lines(tmp_path):
    rows = [{"step": s, "best_train": 0.3 + 0.1 * s, "mean_train": 0.2, "pick_val": None if s == 0 else 0.35}
            for s in range(3)]
    ax = progress_figure(rows, {"train": 0.41, "val": 0.38, "test": None}).get_axes()[0]
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)
    lines = {ln.get_linestyle(): ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() in ("--", ":")}
    assert lines == {"--": 0.41, ":": 0.38}
    assert "#params train JCM (0.410)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(progress_figure(rows, {"train": 0.41, "val": None}).get_axes()[0].get_lines()) == 4


def test_evolve_scores_titles_do_not_overlap_and_formula_wraps():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    rng = np.random.default_rng(0)
    panels = [{"space": "pit", "target": t, "scores": rng.random(12), "accuracy": rng.random(12),
               "folds": {"train": np.arange(6), "val": np.arange(6, 9), "test": np.arange(9, 12)}}
              for t in ("c100_kd", "flowers_kd")]
    formula = "agg_sum(sum(|(weight * weight_grad)|)) + " * 6
    fig = evolve_scores_figure(panels, "my-run", formula.strip(" +"))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    sup = fig._suptitle.get_window_extent(renderer)
    for ax in fig.get_axes():
        assert not sup.overlaps(ax.title.get_window_extent(renderer))
        assert ax.title.get_fontsize() < fig._suptitle.get_fontsize()
    label = fig._supxlabel.get_text()
    assert label.startswith("score = agg_sum") and len(label.splitlines()) > 1
    assert max(len(ln) for ln in label.splitlines()) <= 14 * 3.2 * 2
    assert fig._supxlabel.get_window_extent(renderer).width <= fig.bbox.width
    assert len(png_bytes(fig)) > 1000 and png_bytes(fig)[:8] == PNG
    assert math.isclose(fig.get_figwidth(), 3.2 * 2 + 0.3)

    two = panels + [{**panels[0], "space": "autoformer"}]  # a row per space: 2 x 2, the empty cell hidden
    axes = evolve_scores_figure(two, "my-run").get_axes()
    titles = [a.get_title() for a in axes]
    assert len(axes) == 4 and [a.axison for a in axes] == [True, True, True, False]
    assert [t.split()[:2] for t in titles[:3]] == [["pit", "c100_kd"], ["pit", "flowers_kd"], ["autoformer", "c100_kd"]]
