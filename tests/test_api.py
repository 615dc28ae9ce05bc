"""The top-level Python API: lazy import, and ``autoprox.score`` equal to the engine's score."""
from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import replace

import pytest

import autoprox
from autoprox.parallel.backends import make_backend, score_proxies
from autoprox.proxy.spec import resolve
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig
from tests.conftest import PIT_SMALL


def test_import_is_lazy():
    code = "import sys, autoprox; print(sorted(m for m in ('torch', 'numpy', 'autoprox.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_names_resolve_to_the_engine():
    assert autoprox.list_proxies() == sorted(autoprox.list_proxies()) and "snip" in autoprox.list_proxies()
    assert str(autoprox.get_proxy("snip").expr) == str(resolve("snip").expr)
    assert autoprox.get_proxy("agg_sum(sum(abs(weight)))").name == "agg_sum(sum(abs(weight)))"
    importlib.import_module("autoprox.archsearch.run")  # the stages' packages do not shadow the API's names
    importlib.import_module("autoprox.discovery.run")
    assert autoprox.search is autoprox.api.search and autoprox.evolve is autoprox.api.evolve
    with pytest.raises(ValueError, match="needs proxy= and space="):
        autoprox.search(proxy="snip")


def test_default_batch_is_the_engine_batch():
    images, labels = autoprox.default_batch(size=4, resolution=32, num_classes=10)
    assert tuple(images.shape) == (4, 3, 32, 32) and tuple(labels.shape) == (4,)
    again, _ = autoprox.default_batch(size=4, resolution=32, num_classes=10)
    assert bool((images == again).all())


@pytest.mark.parametrize("proxy", ["snip", "naswot"])
def test_score_equals_engine(proxy, tiny_scoring, tiny_batch):
    """A freshly built space model scored by autoprox.score == the engine's serial backend score
    of that arch (float32 statistics, no cache)."""
    scoring = replace(tiny_scoring, use_cache=False, stats=replace(tiny_scoring.stats, dtype="float32"))
    be = make_backend("serial", "pit", scoring)
    p = resolve(proxy)
    try:
        be.load([PIT_SMALL], sorted(p.families))
        engine = float(score_proxies(be, [p])[0, 0])
    finally:
        be.close()
    model = get_space("pit").build(PIT_SMALL, num_classes=scoring.batch.num_classes,
                                   img_size=scoring.batch.resolution, seed=scoring.seed,
                                   drop_path=scoring.stats.drop_path)
    api = autoprox.score(model, tiny_batch.images, tiny_batch.labels, proxy, seed=scoring.seed,
                         stats=StatsConfig(act_samples=2, act_tokens=4))
    assert engine == pytest.approx(api, rel=1e-5) and abs(engine) > 0


def test_score_refuses_fused_and_teacher_proxies(tiny_batch):
    model = get_space("pit").build(PIT_SMALL, num_classes=10, img_size=32, seed=0)
    with pytest.raises(ValueError, match="fuses its parts"):
        autoprox.score(model, tiny_batch.images, tiny_batch.labels, "tvt")
    with pytest.raises(ValueError, match="teacher"):
        autoprox.score(model, tiny_batch.images, tiny_batch.labels, "negate(teacher_gap)")


def test_api_search_and_evolve_show_progress_unless_asked_not_to(tmp_path, tiny_scoring, capsys):
    res = autoprox.search(proxy="params", space="pit", budget=6, out=tmp_path / "s")
    err = capsys.readouterr().err
    assert len(res.history) == 6 and "search pit with params: 6/6" in err, err
    autoprox.search(proxy="params", space="pit", budget=6, progress=False)
    assert capsys.readouterr().err == ""
    from autoprox.discovery.config import EvolveConfig
    from autoprox.discovery.objective import ObjectiveConfig
    from autoprox.discovery.variation import VariationConfig
    cfg = EvolveConfig(population=4, steps=1, offspring=4, hall_of_fame=2, seed_proxies=("params",),
                       objective=ObjectiveConfig(spaces=("pit",), limit=12, scoring=tiny_scoring),
                       variation=VariationConfig(leaves=("weight_norm",), single_leaves=("num_params",)))
    autoprox.evolve(cfg, out=tmp_path / "e")
    err = capsys.readouterr().err
    assert "evolve: 1/1" in err and "pick val" in err, err
