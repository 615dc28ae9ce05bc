"""Training-free search: constraints, strategies, resume, bench-only regret, API and CLI errors."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from autoprox.data.benchmark import load_benchmark
import autoprox.archsearch.run as search_mod
from autoprox.cli.main import main
from autoprox.core.config import load_config
from autoprox.archsearch.config import SearchConfig, parse_window
from autoprox.archsearch.run import bench_only_table, rank_archs, search
from autoprox.spaces import ArchError, get_space

from conftest import SMALL

PIT = get_space("pit")
AF = get_space("autoformer")
# log(flops - 4 params): NaN on the PiT archs with fewer than 4 MACs per parameter (at 32 px, about half).
TWO_P = "element_wise_sum(num_params,num_params)"
PARTLY_NAN = f"log(element_wise_difference(flops,element_wise_sum({TWO_P},{TWO_P})))"


def small_pit(tiny_scoring, **kw) -> SearchConfig:
    """snip on PiT archs under 1 M params: real statistics, fast at 32 px."""
    base = dict(proxy="snip", space="pit", params=(0.0, 1.0), budget=12, chunk=4, population=4,
                parents=3, strategy="evolution", top_k=3, scoring=tiny_scoring)
    return SearchConfig(**{**base, **kw})


def proxy_file(tmp_path, expr: str, name: str = "mine") -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "expression": expr}))
    return str(p)


@pytest.mark.parametrize("text,window", [("4-9", (4.0, 9.0)), (" 2.5 - 6 ", (2.5, 6.0)),
                                         ("4-", (4.0, math.inf)), ("-9", (0.0, 9.0)), ("1e0-2e1", (1.0, 20.0))])
def test_parse_window(text, window):
    assert parse_window(text) == window


@pytest.mark.parametrize("text,msg", [("4", "expected MIN-MAX"), ("a-b", "expected MIN-MAX"), ("-", "expected"),
                                      ("9-4", "min 9.0 is larger than max 4.0")])
def test_parse_window_errors(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_window(text, "--params")


def test_rank_archs_params_known_order(tiny_scoring):
    archs = [{**SMALL["pit"], "base_dim": d} for d in (24, 40, 16, 32)]
    ranked = rank_archs("params", "pit", archs, scoring=tiny_scoring)
    assert [r["index"] for r in ranked] == [1, 3, 0, 2]  # wider = more parameters
    for r in ranked:  # the proxy counts at the batch's size; reported counts are the deployed model's
        assert r["score"] == PIT.num_params(archs[r["index"]], 10, 32)
        assert r["num_params"] == PIT.num_params(archs[r["index"]], 100, 224)
        assert r["flops"] == PIT.flops(archs[r["index"]], 100, 224)
    assert not list(Path(tiny_scoring.cache_dir).rglob("*.apx"))  # data-free: nothing built or cached


def test_rank_archs_invalid_arch_names_index_and_field(tiny_scoring):
    archs = [SMALL["pit"], {**SMALL["pit"], "base_dim": 17}]
    with pytest.raises(ArchError, match=r"arch 1: base_dim=17 is outside the space"):
        rank_archs("params", "pit", archs, scoring=tiny_scoring)
    with pytest.raises(ArchError, match=r"arch 0: .*missing field\(s\) \['depth'\]"):
        rank_archs("params", "pit", [{k: v for k, v in SMALL["pit"].items() if k != "depth"}],
                   scoring=tiny_scoring)


def test_random_params_search_window_and_outputs(tmp_path, tiny_scoring):
    cfg = SearchConfig(proxy="params", space="autoformer", params=(6.0, 7.0), flops=(0.0, 1500.0),
                       budget=300, chunk=64, top_k=4, scoring=tiny_scoring)
    res = search(cfg, tmp_path / "run")
    hist = res.history
    assert len(hist) == 300 and len({AF.key(h["arch"]) for h in hist}) == 300  # all unseen
    assert all(6e6 <= h["num_params"] <= 7e6 and h["flops"] <= 1500e6 for h in hist)
    best = max(h["score"] for h in hist)
    assert res.best["score"] == best and [t["rank"] for t in res.top] == [1, 2, 3, 4]
    assert [t["score"] for t in res.top] == sorted((h["score"] for h in hist), reverse=True)[:4]
    assert not list((tmp_path / "cache").rglob("*.apx"))  # data-free: no model built or cached
    doc = yaml.safe_load((tmp_path / "run" / "result.yaml").read_text())
    assert doc["proxy"] == "params" and doc["constraints"]["params_m"] == [6.0, 7.0] and doc["scored"] == 300
    arch = doc["top"][0]["arch"]
    model = AF.build(arch, num_classes=10, img_size=32)  # the exact format build() accepts
    assert sum(p.numel() for p in model.parameters()) == AF.num_params(arch, 10, 32)
    assert doc["top"][0]["num_params"] == AF.num_params(arch, 100, 224)
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert len(rows) == 300 and json.loads(rows[5]["arch"]) == hist[5]["arch"]
    assert load_config(SearchConfig, tmp_path / "run" / "config.yaml") == cfg


def test_evolution_with_statistics(tiny_scoring):
    res = search(small_pit(tiny_scoring, budget=16))
    origins = [h["origin"] for h in res.history]
    assert origins[:4] == ["random"] * 4 and {"mutation", "crossover"} & set(origins[4:])
    assert len({PIT.key(h["arch"]) for h in res.history}) == 16
    assert all(h["num_params"] <= 1e6 and math.isfinite(h["score"]) for h in res.history)
    assert res.best["score"] == max(h["score"] for h in res.history)
    assert res.timings["stats"] > 0 and res.timings["score"] > 0
    again = search(small_pit(tiny_scoring, budget=16))
    assert [h["arch"] for h in again.history] == [h["arch"] for h in res.history]
    assert not list(Path(tiny_scoring.cache_dir).rglob("*.apx"))  # fresh candidates are never cached
    snip = rank_archs("snip", "pit", [h["arch"] for h in res.history[:3]], scoring=tiny_scoring)  # cached full pass
    assert sorted(r["score"] for r in snip) == sorted(h["score"] for h in res.history[:3])  # lean = full, bit for bit


class Kill(Exception):
    pass


def kill_after(n: int):
    def progress(done: int, total: int, best) -> None:
        if done >= n:
            raise Kill
    return progress


def test_resume_equals_unbroken_run(tmp_path, tiny_scoring):
    cfg = small_pit(tiny_scoring)
    search(cfg, tmp_path / "whole")
    with pytest.raises(Kill):
        search(cfg, tmp_path / "broken", progress=kill_after(8))  # killed after two chunks
    state = json.loads((tmp_path / "broken" / "state.json").read_text())
    assert len(state["history"]) == 8 and not state["done"]
    assert not (tmp_path / "broken" / "result.yaml").exists()
    seen = []
    search(cfg, tmp_path / "broken", resume=True, progress=lambda d, t, b: seen.append(d))
    assert seen == [8, 12]  # nothing redone
    for f in ("result.yaml", "history.csv"):
        assert (tmp_path / "broken" / f).read_text() == (tmp_path / "whole" / f).read_text()


def test_resume_after_kill_mid_chunk(tmp_path, tiny_scoring, monkeypatch):
    cfg = small_pit(tiny_scoring, strategy="random")
    search(cfg, tmp_path / "whole")
    real, calls = search_mod._Scorer.__call__, []

    def dying(self, archs):
        calls.append(len(archs))
        if len(calls) == 3:
            raise Kill  # killed while the third chunk is being scored
        return real(self, archs)
    monkeypatch.setattr(search_mod._Scorer, "__call__", dying)
    with pytest.raises(Kill):
        search(cfg, tmp_path / "broken")
    monkeypatch.setattr(search_mod._Scorer, "__call__", real)
    assert len(json.loads((tmp_path / "broken" / "state.json").read_text())["history"]) == 8
    search(cfg, tmp_path / "broken", resume=True)
    assert (tmp_path / "broken" / "result.yaml").read_text() == (tmp_path / "whole" / "result.yaml").read_text()


def test_resume_refusals(tmp_path, tiny_scoring):
    cfg = SearchConfig(proxy="params", space="pit", budget=8, chunk=4, scoring=tiny_scoring)
    fresh = search(cfg, tmp_path / "early", resume=True)  # killed before the first checkpoint: starts afresh
    assert len(fresh.history) == 8
    search(cfg, tmp_path)
    with pytest.raises(ValueError, match="already holds a search run: resume it"):
        search(cfg, tmp_path)
    with pytest.raises(ValueError, match=r"config differs .*budget: 8 \(saved\) vs 9 \(now\)"):
        search(dataclasses.replace(cfg, budget=9), tmp_path, resume=True)
    moved = dataclasses.replace(cfg, scoring=dataclasses.replace(tiny_scoring, cache_dir=str(tmp_path / "c2")))
    assert search(moved, tmp_path, resume=True).best["score"] > 0  # cache location may change
    held = dataclasses.replace(cfg, scoring=dataclasses.replace(tiny_scoring, score_memory_mb=1))
    assert search(held, tmp_path, resume=True).best["score"] > 0  # so may the memory a worker holds
    other = dataclasses.replace(cfg, scoring=dataclasses.replace(tiny_scoring, evaluator="reference"))
    with pytest.raises(ValueError, match="config differs .*evaluator"):  # not the evaluator: ties could part
        search(other, tmp_path, resume=True)
    # a run saved before a config key existed resumes with the key's default
    st = json.loads((tmp_path / "state.json").read_text())
    assert st["config"].pop("top_k") == cfg.top_k
    (tmp_path / "state.json").write_text(json.dumps(st))
    assert search(cfg, tmp_path, resume=True).best["score"] > 0


def test_nan_scores_kept_but_never_picked(tmp_path, tiny_scoring):
    cfg = SearchConfig(proxy=proxy_file(tmp_path, PARTLY_NAN), space="pit", budget=64, top_k=64,
                       scoring=tiny_scoring)
    res = search(cfg, tmp_path / "run")
    nan = [h for h in res.history if math.isnan(h["score"])]
    assert 0 < len(nan) < 64 and len(res.top) == 64 - len(nan)
    assert all(math.isfinite(t["score"]) for t in res.top)
    assert yaml.safe_load((tmp_path / "run" / "result.yaml").read_text())["nan_scores"] == len(nan)
    cfg = dataclasses.replace(cfg, proxy=proxy_file(tmp_path, "log(negate(num_params))", "neg"), budget=8)
    with pytest.raises(ValueError, match="scored NaN on all 8 candidates"):
        search(cfg)


def test_bench_only_regret_by_hand(tmp_path, tiny_scoring):
    cfg = SearchConfig(proxy="params", space="pit", params=(1.0, 6.0), bench_only=True,
                       targets=("c100_kd", "flower_base"), scoring=tiny_scoring)
    res = search(cfg, tmp_path / "run")
    raw = json.loads(open(load_benchmark("pit").source).read())
    eligible = [i for i, r in enumerate(raw) if 1e6 <= PIT.num_params(r["arch"], 100, 224) <= 6e6]
    scores = [PIT.num_params(raw[i]["arch"], 10, 32) for i in eligible]  # the proxy at the batch size
    pick = eligible[int(np.argmax(scores))]  # first of ties, like the search
    assert len(res.history) == len(eligible) and res.best["arch"] == PIT.validate(raw[pick]["arch"])
    for row, t in zip(res.regret, ("c100_kd", "flower_base")):
        acc = [raw[i][f"{t}_acc"] for i in eligible]
        a = raw[pick][f"{t}_acc"]
        assert row["pick"] == pick and row["n"] == len(eligible) and row["pick_acc"] == a
        assert row["best_acc"] == max(acc) and row["regret"] == pytest.approx(max(acc) - a)
        assert row["rank"] == 1 + sum(x > a for x in acc)
        assert row["kendall"] == pytest.approx(sps.kendalltau(scores, acc).statistic, abs=1e-12)
        assert row["kendall_lo"] <= row["kendall"] <= row["kendall_hi"] and row["n_boot"] == 1000
        assert row["regret_lo"] <= row["regret"] <= row["regret_hi"]
    search(cfg, tmp_path / "again")  # the intervals are seeded: the same result.yaml
    assert (tmp_path / "again" / "result.yaml").read_text() == (tmp_path / "run" / "result.yaml").read_text()
    doc = yaml.safe_load((tmp_path / "run" / "result.yaml").read_text())
    assert doc["strategy"] == "bench-only" and doc["bench_only"]["rows"] == res.regret
    table = bench_only_table(["params", "flops"], "pit", tiny_scoring, params=(1.0, 6.0),
                             targets=("c100_kd", "flower_base"))
    assert table[:2] == res.regret and [r["proxy"] for r in table] == ["params"] * 2 + ["flops"] * 2


def test_cli_search_resume_and_table(tmp_path, tiny_scoring, capsys):
    flags = ["search", "--proxy", "params", "--space", "pit", "--params", "0.5-3", "--budget", "24",
             "--chunk", "8", "--strategy", "evolution", "--population", "8", "--top-k", "2",
             "--cache-dir", tiny_scoring.cache_dir, "--batch-size", "4", "--resolution", "32"]
    assert main(flags + ["--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| rank | score | params (M) |") and "24 candidates scored" in out
    cfg = load_config(SearchConfig, tmp_path / "a" / "config.yaml")
    assert cfg.params == (0.5, 3.0) and cfg.scoring.batch.size == 4 and cfg.strategy == "evolution"
    with pytest.raises(Kill):
        search(cfg, tmp_path / "b", progress=kill_after(8))
    saved = len(json.loads((tmp_path / "b" / "state.json").read_text())["history"])
    assert 0 < saved < 24
    capsys.readouterr()
    assert main(flags + ["--out", str(tmp_path / "b"), "--resume"]) == 0
    assert (tmp_path / "b" / "result.yaml").read_text() == (tmp_path / "a" / "result.yaml").read_text()
    assert re.search(rf"\n{24 - saved} candidates scored in [\d.]+ s, {saved} more read from the checkpoint "
                     r"\(24 in all\); wrote", capsys.readouterr().out)
    assert main(flags + ["--out", str(tmp_path / "a")]) == 2
    assert "already holds a search run" in capsys.readouterr().err
    assert main(flags + ["--out", str(tmp_path / "a"), "--resume", "--budget", "30"]) == 2
    assert "budget: 24 (saved) vs 30 (now)" in capsys.readouterr().err


def test_cli_bench_only_prints_regret(tmp_path, capsys):
    assert main(["search", "--proxy", "params", "--space", "autoformer", "--bench-only",
                 "--targets", "c100_kd", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "| params | autoformer | c100_kd | 100 |" in out and "100 candidates scored" in out
    assert "| regret [95% CI] | τ [95% CI] |" in out and "Intervals: 95% bootstrap percentile" in out


@pytest.mark.parametrize("argv,msg", [
    (["--space", "autoformer", "--params", "1-2"], "no autoformer arch within params 1-2 M in 20000 samples"),
    (["--space", "pit", "--proxy", "nope"], "unknown proxy 'nope'"),
    (["--space", "pit", "--params", "4to9"], "--params '4to9': expected MIN-MAX in millions"),
    (["--space", "vit"], "unknown search space 'vit'"),
    (["--space", "pit", "--budget", "0"], "budget must be >= 1"),
    (["--space", "pit", "--bench-only", "--params", "90-99"], "no benchmark arch of pit lies within"),
])
def test_cli_search_errors(tmp_path, capsys, argv, msg):
    proxy = [] if "--proxy" in argv else ["--proxy", "params"]
    assert main(["search", *proxy, *argv, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o" / "state.json").exists()


def test_cli_search_config_unknown_key(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("proxy: params\nspace: pit\npopulaton: 8\n")
    assert main(["search", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) ['populaton']" in capsys.readouterr().err


@pytest.mark.ray
def test_ray_backend_search_matches_serial(tmp_path, tiny_scoring):
    ray = pytest.importorskip("ray")
    cfg = small_pit(tiny_scoring, budget=4, strategy="random")
    serial = search(cfg)
    try:
        res = search(dataclasses.replace(cfg, scoring=dataclasses.replace(
            tiny_scoring, cache_dir=str(tmp_path / "ray_cache"))), backend="ray", workers=2)
    except Exception as e:  # noqa: BLE001  (no Ray on this machine: skip, do not fail)
        if ray.is_initialized():
            ray.shutdown()
        pytest.skip(f"ray did not start: {e}")
    assert [h["arch"] for h in res.history] == [h["arch"] for h in serial.history]
    np.testing.assert_allclose([h["score"] for h in res.history], [h["score"] for h in serial.history],
                               rtol=1e-4)


def test_fused_proxies_are_refused_where_chunks_would_split_them(tiny_scoring, teacher_file):
    from dataclasses import replace as _replace
    from autoprox.archsearch.config import SearchConfig
    from autoprox.archsearch.run import search
    cfg = SearchConfig(proxy="tvt", space="pit", budget=4, scoring=_replace(tiny_scoring, teacher=teacher_file))
    with pytest.raises(ValueError, match="fuses its parts across archs"):
        search(cfg)
