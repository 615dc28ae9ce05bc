"""The batched evaluator scores as the per-layer reference does.

Over >= 500 genomes drawn from the variation operators (every op, every leaf kind, fused genomes)
on both shipped spaces and an AutoFormer supernet space: equal to rel 1e-4, NaN where the
reference gives NaN, the same infinities. Where the reference's own value is float noise (a sum
that cancels to ~0), it is compared within ten times what the reference moves when its inputs are
perturbed by 1e-6 (a few float32 steps); those entries are counted and must stay rare.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import primitives
from autoprox.discovery.variation import VariationConfig, crossover, mutate, random_genome
from autoprox.parallel.worker import ScoringWorker
from autoprox.proxy.graph import DATA_FREE, GraphProxy, leaves, parse, score_population
from autoprox.proxy.population import PopulationScorer
from autoprox.proxy.zoo import get_proxy, list_proxies
from autoprox.stats.base import ArchStats
from autoprox.stats.passes import get_pass
from autoprox.spaces import get_space
from conftest import FIDELITY_SPACES

LEAVES = ("gelu_input", "gelu_input_grad", "linear_input", "linear_input_grad", "weight", "weight_grad",
          "norm_output", "norm_output_grad", "virtual_grad", "attention", "attention_grad", "fisher", "grad_snr",
          "weight_norm", "snip_saliency", "weight_grad_norm", "synflow_saliency", "dss_nuclear", "zico_snr",
          "token_entropy", "token_min_eig", "meco", "norm_stable_rank", "weight_l1_l2")
SINGLE = ("num_params", "flops", "depth", "width", "heads", "mlp_ratio", "naswot_kernel", "input_grad_corr",
          "swap_patterns")
VAR = VariationConfig(leaves=LEAVES, single_leaves=SINGLE, max_parts=2, max_nodes=12)


def _genomes(n: int, seed: int) -> list[str]:
    """Part expressions of genomes drawn, mutated and crossed over, plus one per op not yet seen."""
    rng = random.Random(seed)
    pop = [random_genome(rng, VAR) for _ in range(n // 3)]
    while len({tuple(g) for g in pop}) < n:
        a, b = rng.sample(pop, 2)
        pop.append(mutate(a, rng, VAR))
        pop.extend(crossover(a, b, rng, VAR))
    assert sum(len(g) > 1 for g in pop) > n // 10  # fused genomes among them
    exprs = list(dict.fromkeys(p for g in pop for p in g))
    used = {e for x in exprs for e in _ops(parse(x))}
    for op in primitives.list_ops():  # every op at least once, on a layered leaf
        if op not in used:
            o = primitives.get_op(op)
            inner = f"{op}(weight)" if o.arity == 1 else f"{op}(weight,attention)"
            exprs.append(inner if o.group == "aggregate" else f"agg_mean({inner})")
    for op in primitives.list_ops("binary"):  # operand kinds evolution rarely pairs: single x layered both ways,
        for a, b in (("num_params", "weight"), ("weight", "depth"), ("naswot_kernel", "gelu_input"),  # layer lists
                     ("token_entropy", "swap_patterns"), ("attention", "weight_norm"), ("meco", "attention")):
            exprs.append(f"agg_mean({op}({a},{b}))")  # of different lengths, and single x single
        exprs.append(f"{op}(naswot_kernel,input_grad_corr)")
    zoo = [str(p.expr) for n in list_proxies() for p in get_proxy(n).parts if hasattr(p, "expr")]
    return exprs + [z for z in zoo if not (leaves(parse(z)) - DATA_FREE) - set(LEAVES + SINGLE + ("loss",))]


def _ops(e) -> set[str]:
    return set() if e.is_leaf else {e.head}.union(*(_ops(a) for a in e.args))


def _same(a: np.ndarray, b: np.ndarray, tol: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    with np.errstate(invalid="ignore"):
        return both_nan | same_inf | (np.abs(a - b) <= tol)


def _perturbed(s: ArchStats, g: torch.Generator) -> ArchStats:
    t = {f: [x * (1 + 1e-6 * torch.randn(x.shape, generator=g)) for x in v] for f, v in s.tensors.items()}
    return ArchStats(t, dict(s.kinds), dict(s.scalars))


@pytest.fixture(scope="module", params=FIDELITY_SPACES)
def held(request, tmp_path_factory, tiny_batch_cfg):
    from autoprox.stats.base import StatsConfig
    from autoprox.stats.provider import ScoringConfig
    space = request.param
    cfg = ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                        cache_dir=str(tmp_path_factory.mktemp("cache")), evaluator="reference")
    rng = random.Random(0)
    archs = [get_space(space).sample(rng) for _ in range(5)]
    w = ScoringWorker(space, cfg)
    w.load(archs, list(get_pass("base").families) + list(get_pass("features").families))
    return space, w


def test_batched_scores_equal_the_reference(held):
    space, w = held
    exprs = _genomes(500, seed=FIDELITY_SPACES.index(space))
    ref = np.array(w.score(exprs))  # evaluator: reference
    got = PopulationScorer(w.held).score(exprs)
    assert got.shape == ref.shape == (5, len(exprs))
    close = _same(ref, got, 1e-4 * np.abs(ref))
    cols = sorted(set(np.nonzero(~close)[1]))
    if cols:  # the reference's float noise, measured on perturbed inputs
        g = torch.Generator().manual_seed(0)
        proxies = [GraphProxy(exprs[j], parse(exprs[j])) for j in cols]
        moved = np.array([score_population(proxies, _perturbed(s, g)) for s in w.held])
        with np.errstate(invalid="ignore"):
            tol = 1e-4 * np.abs(ref[:, cols]) + 10 * np.abs(ref[:, cols] - moved)
        ok = _same(ref[:, cols], got[:, cols], np.nan_to_num(tol, nan=0.0))
        bad = [(exprs[j], ref[:, j], got[:, j]) for k, j in enumerate(cols) if not ok[:, k].all()]
        assert not bad, bad[:3]
    assert len(cols) <= 0.01 * len(exprs), f"{len(cols)} expressions only equal within float noise"
    assert 0.0 < np.isnan(ref).mean() < 0.5  # NaN cases are exercised, and scores are mostly finite


def test_chunks_and_streaming_give_the_same_scores(held):
    space, w = held
    exprs = _genomes(60, seed=7)
    whole = PopulationScorer(w.held).score(exprs)
    small = PopulationScorer(w.held, chunk_bytes=1, resident_bytes=0)  # one arch per chunk, nothing kept
    assert len(small.chunks(len(w.held))) == len(w.held)
    np.testing.assert_array_equal(np.isnan(small.score(exprs)), np.isnan(whole))
    np.testing.assert_allclose(small.score(exprs), whole, rtol=1e-5, atol=0)
    assert small.resident_nbytes == 0
    kept = PopulationScorer(w.held, chunk_bytes=1)
    first = kept.score(exprs)
    assert kept.resident_nbytes > 0
    np.testing.assert_array_equal(kept.score(exprs), first)  # from the resident packs: bit for bit
    np.testing.assert_array_equal(kept.score(exprs, first=2), first[:2])
