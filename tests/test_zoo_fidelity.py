"""Every zoo proxy equals an independent plain-torch implementation of its paper's definition
(tests/zoo_reference.py), on two tiny archs per space (both shipped spaces and AutoFormer-Tiny's supernet), float32 statistics, to rel 1e-4."""
import random

import numpy as np
import pytest

from autoprox.parallel.backends import SerialBackend
from autoprox.proxy.zoo import get_proxy, list_proxies
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig
from autoprox.stats.provider import ScoringConfig

import zoo_reference as ref
import zoo_reference_recent as recent
from conftest import FIDELITY_SPACES, SMALL, score_named

SAMPLES, TOKENS = 2, 4


@pytest.fixture(scope="module")
def engine(tiny_batch_cfg, teacher_file):
    """(archs, {space: {proxy: scores of the archs}}) from the engine, every zoo proxy at once."""
    cfg = ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(dtype="float32", act_samples=SAMPLES,
                                                                act_tokens=TOKENS),
                        use_cache=False, teacher=teacher_file)
    archs, scores = {}, {}
    for space in FIDELITY_SPACES:
        archs[space] = [SMALL[space], get_space(space).mutate(SMALL[space], random.Random(1), 0.9)]
        backend = SerialBackend(space, cfg)
        backend.load(archs[space], sorted(set().union(*(get_proxy(n).families for n in list_proxies()))))
        scores[space] = dict(zip(list_proxies(), score_named(backend, list_proxies())))
        backend.close()
    return archs, scores


def test_every_zoo_proxy_has_a_reference():
    fused = {"tvt", "evolved_c100_kd", "az_nas"}  # tested below
    assert set(list_proxies()) == set(ref.REFERENCES) | set(recent.REFERENCES) | fused
    assert not set(ref.REFERENCES) & set(recent.REFERENCES)


REFERENCES = {**ref.REFERENCES, **recent.REFERENCES}


@pytest.mark.parametrize("space", FIDELITY_SPACES)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_zoo_proxy_equals_its_reference(name, space, engine, tiny_batch):
    archs, scores = engine
    want = [REFERENCES[name](space, a, tiny_batch.images, tiny_batch.labels, 0, SAMPLES, TOKENS)
            for a in archs[space]]
    assert np.all(np.isfinite(want)), want
    assert scores[space][name] == pytest.approx(np.array(want), rel=1e-4)


@pytest.mark.parametrize("space", FIDELITY_SPACES)
def test_tvt_equals_its_reference(space, engine, tiny_batch, teacher_file):
    archs, scores = engine
    parts = [ref.tvt_parts(space, a, tiny_batch.images, 0, teacher_file) for a in archs[space]]
    assert parts[0] != pytest.approx(parts[1])  # two distinct archs: the rank sum is informative
    assert scores[space]["tvt"] == pytest.approx(ref.tvt_scores(space, archs[space], tiny_batch.images, 0,
                                                                 teacher_file))


@pytest.mark.parametrize("space", FIDELITY_SPACES)
def test_evolved_c100_kd_equals_its_reference(space, engine, tiny_batch):
    """A rank-sum across the archs scored together: each part from plain torch, then ranked."""
    archs, scores = engine
    args = (tiny_batch.images, tiny_batch.labels, 0, SAMPLES, TOKENS)
    parts = [ref.evolved_c100_kd_parts(space, a, *args) for a in archs[space]]
    assert all(parts[0][j] != pytest.approx(parts[1][j]) for j in range(3))  # every part ranks the two archs
    assert scores[space]["evolved_c100_kd"] == pytest.approx(ref.evolved_c100_kd_scores(space, archs[space], *args))


@pytest.mark.parametrize("space", FIDELITY_SPACES)
def test_az_nas_equals_its_reference(space, engine, tiny_batch):
    archs, scores = engine
    parts = [recent.az_nas_parts(space, a, tiny_batch.images, tiny_batch.labels, 0, SAMPLES, TOKENS)
             for a in archs[space]]
    assert all(np.isfinite(parts).ravel()) and parts[0][0] != pytest.approx(parts[1][0])
    assert scores[space]["az_nas"] == pytest.approx(recent.az_nas_scores(space, archs[space], tiny_batch.images,
                                                                         tiny_batch.labels, 0, SAMPLES, TOKENS))
