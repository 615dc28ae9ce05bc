"""Serial and Ray backends: same scores, arch order kept, dead workers replaced."""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from autoprox.proxy.graph import GraphProxy
from autoprox.parallel.backends import RayBackend, ScoringWorker, SerialBackend, make_backend, score_proxies
from autoprox.stats.provider import ScoringConfig
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig

from conftest import SMALL, score_named

pytestmark = pytest.mark.ray

NAMED = ["snip", "params", "autoprox_paper"]
EXPRS = ["agg_sum(abs(weight))", "agg_mean(to_mean_scalar(sigmoid(linear_input_grad)))"]


def tiny_archs(n: int = 4) -> list[dict]:
    space = get_space("pit")
    return [space.mutate(SMALL["pit"], random.Random(i), 0.9) for i in range(n)]


@pytest.fixture(scope="module")
def module_scoring(tmp_path_factory, tiny_batch_cfg) -> ScoringConfig:
    """``tiny_scoring`` at module scope, so one Ray session serves the module."""
    return ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                         cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def serial(module_scoring):
    b = SerialBackend("pit", module_scoring)
    b.load(tiny_archs())
    yield b
    b.close()


@pytest.fixture(scope="module")
def ray_backend(module_scoring, tmp_path_factory):
    """Its own cache dir: the workers compute the statistics themselves."""
    cfg = dataclasses.replace(module_scoring, cache_dir=str(tmp_path_factory.mktemp("ray_cache")))
    b = RayBackend("pit", cfg, workers=2, threads_per_worker=1)
    b.load(tiny_archs())
    yield b
    b.close()


def test_serial_shapes_and_repeatability(serial):
    m = serial.score(EXPRS)
    assert m.shape == (len(EXPRS), 4) and np.isfinite(m).all()
    np.testing.assert_array_equal(m, serial.score(EXPRS))
    assert serial.score([]).shape == (0, 4)


def test_fused_and_plain_proxies_keep_their_slots(serial):
    """``score_proxies`` scores every part once and puts each proxy's combined row in its slot."""
    from autoprox.proxy.fuse import FusedProxy
    g = GraphProxy.from_text("p", "num_params")
    f = FusedProxy("f", (g, GraphProxy.from_text("q", "negate(num_params)")), "rank_sum")
    m = score_proxies(serial, [g, f, g])
    params = m[0]
    np.testing.assert_array_equal(m[2], params)
    np.testing.assert_array_equal(m[1], np.full(4, 5.0))  # rank r plus rank (5 - r): constant


def test_worker_rows_follow_load_order(module_scoring):
    archs = tiny_archs()
    w = ScoringWorker("pit", module_scoring)
    assert w.load(archs[::-1], families=[]) == 4  # data-free: parameter counts only
    params = [get_space("pit").num_params(a, 10, 32) for a in archs[::-1]]
    assert [r[0] for r in w.score(["num_params"])] == params
    w.drop()
    assert w.score(EXPRS) == []


def test_serial_and_ray_agree(serial, ray_backend):
    for a, b, specs in ((score_named(serial, NAMED), score_named(ray_backend, NAMED), NAMED),
                        (serial.score(EXPRS), ray_backend.score(EXPRS), EXPRS)):
        assert a.shape == b.shape == (len(specs), 4)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0, equal_nan=True)  # thread count changes float sum order
    params = [get_space("pit").num_params(a, 10, 32) for a in tiny_archs()]
    np.testing.assert_array_equal(score_named(ray_backend, ["params"])[0], params)  # order kept


def test_dead_worker_is_replaced(serial, ray_backend):
    import ray

    dead = ray_backend.actors[1]
    ray.kill(dead)
    np.testing.assert_allclose(ray_backend.score(EXPRS), serial.score(EXPRS), rtol=1e-6, atol=0, equal_nan=True)  # thread count changes float sum order
    np.testing.assert_allclose(score_named(ray_backend, NAMED), score_named(serial, NAMED),
                               rtol=1e-6, atol=0, equal_nan=True)  # thread count changes float sum order
    assert ray_backend.actors[1] is not dead


def test_ray_load_reports_every_arch_and_survives_a_death(serial, ray_backend):
    """With a progress callback each arch is reported as it ends (not each shard at its end); an actor
    killed mid-load has its shard re-loaded by a replacement, and the count still adds up."""
    import ray

    told: list[int] = []
    wait = ray_backend.start_load(tiny_archs(), None, told.append)
    ray.kill(ray_backend.actors[0])
    wait()
    assert sum(told) == 4 and len(told) >= 3, told  # per arch (shards of 2): one report per arch or a re-load
    np.testing.assert_allclose(ray_backend.score(EXPRS), serial.score(EXPRS), rtol=1e-6, atol=0, equal_nan=True)
    told.clear()
    ray_backend.load(tiny_archs(), None, told.append)
    assert told == [1, 1, 1, 1]


def test_retries_exhausted_raise_then_recover(serial, ray_backend, monkeypatch):
    import ray
    from ray.exceptions import RayActorError

    monkeypatch.setattr(ray_backend, "max_retries", 0)
    ray.kill(ray_backend.actors[0])
    with pytest.raises(RayActorError):
        ray_backend.score(EXPRS)
    monkeypatch.undo()
    np.testing.assert_allclose(ray_backend.score(EXPRS), serial.score(EXPRS), rtol=1e-6, atol=0, equal_nan=True)  # thread count changes float sum order


def test_unknown_backend(module_scoring):
    with pytest.raises(ValueError, match="serial, ray"):
        make_backend("nope", "pit", module_scoring)


def test_warm_caches_on_the_workers_without_holding(module_scoring, ray_backend):
    """``warm`` writes each arch's statistics once (on the actor that owns it), holds nothing,
    and a later load from that cache scores like statistics computed in-process."""
    from pathlib import Path

    new = tiny_archs(6)[4:]
    root = Path(ray_backend._args[1].cache_dir)
    before = set(root.rglob("*.apx"))
    ray_backend.warm(new, ["weight", "weight_grad"])
    assert len(set(root.rglob("*.apx")) - before) == 2
    ray_backend.warm(new, ["weight", "weight_grad"])  # second call: all cached, nothing new
    assert len(set(root.rglob("*.apx")) - before) == 2
    assert score_named(ray_backend, ["params"]).shape == (1, 4)  # the loaded shard is untouched
    cached = SerialBackend("pit", ray_backend._args[1])
    fresh = SerialBackend("pit", module_scoring)
    for b in (cached, fresh):
        b.load(new)
    np.testing.assert_allclose(score_named(cached, ["snip"]), score_named(fresh, ["snip"]), rtol=1e-6)
