"""The recent proxies' statistics beyond what the tiny fidelity archs reach: token selection with more
tokens than ``TOKEN_U``, sign patterns over more than 62 images, EPE-NAS's branch for > 100 classes,
and passes that leave the model as built."""
import math

import numpy as np
import pytest
import torch

from autoprox.spaces import get_space
from autoprox.stats import features, jacobian, ntk, zen
from autoprox.stats.layers import seeded, weight_layers
from autoprox.stats.block_spectra import blocks_pass
from autoprox.stats.passes import run_groups
from conftest import SMALL


def test_token_min_eig_keeps_the_least_correlated_tokens():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 12, generator=g)
    x[:10] += 3 * torch.randn(1, 12, generator=g)  # ten tokens share a direction: strongly correlated
    c = np.corrcoef(x.double().numpy())
    keep = np.argsort(np.abs(c).sum(1), kind="stable")[:8]
    assert len(set(keep.tolist()) & set(range(10))) <= 2  # the selection avoids the correlated group
    want = np.linalg.eigvalsh(c[np.ix_(keep, keep)]).min() * 20 / 8
    assert float(features.token_min_eig(x)) == pytest.approx(want, rel=1e-9)
    assert float(features.meco(x)) == pytest.approx(np.linalg.eigvalsh(c).min(), abs=1e-9)


def test_token_entropy_of_uniform_tokens_is_tokens_log_width():
    assert float(features.token_entropy(torch.ones(7, 16))) == pytest.approx(7 * math.log(16))


def test_distinct_patterns_over_more_than_62_images():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(30, 70, generator=g) > 0.5
    codes = [torch.cat([base, base[:5]]), base[10:]]  # 5 + 20 repeated rows
    want = len({tuple(r) for r in torch.cat(codes).tolist()})
    assert want == 30
    assert float(features.distinct_patterns([features.pack_codes(c) for c in codes])) == want


def test_epe_nas_pairwise_branch_beyond_100_classes():
    g = torch.Generator().manual_seed(2)
    jac = torch.randn(9, 3, 4, 4, generator=g)
    labels = torch.tensor([0, 0, 0, 5, 5, 7, 7, 7, 7])
    e = []
    for c in (0, 5, 7):
        rows = jac.flatten(1).double().numpy()[labels.numpy() == c]
        e.append(np.log(np.abs(np.corrcoef(rows)) + 1e-5).sum() / len(rows))
    want = sum(abs(a - b) for a in e for b in e) / 3
    assert float(jacobian.epe_nas(jac, labels, 1000)) == pytest.approx(want)
    assert float(jacobian.epe_nas(jac, labels, 100)) == pytest.approx(sum(abs(v * n) for v, n in zip(e, (3, 2, 4))))


@pytest.mark.parametrize("run", [features.features_pass, zen.zen_pass, blocks_pass, jacobian.jacobian_pass,
                                 ntk.ntk_pass])
def test_recent_passes_leave_the_weights_as_built(run, tiny_batch):
    model = get_space("autoformer").build(SMALL["autoformer"], num_classes=10, img_size=32, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t, _, _ = run(model, tiny_batch.images, tiny_batch.labels, 0, {"grad_groups": 4}, None)
    assert t and all(torch.isfinite(torch.cat([v.flatten() for v in vs])).all() for vs in t.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("space", ["pit", "autoformer"])
def test_ntk_grams_equal_one_backward_per_image(space, tiny_batch):
    """Each layer's Gram from the one backward equals the Gram of per-image gradients taken one image
    at a time (TE-NAS's loop), PiT's grouped pooling convs included."""
    model = get_space(space).build(SMALL[space], num_classes=10, img_size=32, seed=0)
    t, kinds, _ = ntk.ntk_pass(model, tiny_batch.images, tiny_batch.labels, 0, {}, None)
    layers = [m for m, _ in weight_layers(model)]
    model.train()
    with seeded(0, tiny_batch.images.device):
        y = model(tiny_batch.images)
    rows = [[] for _ in layers]
    for n in range(len(y)):
        grads = torch.autograd.grad(y[n].sum(), [m.weight for m in layers], retain_graph=True)
        for i, g in enumerate(grads):
            rows[i].append(g.double().flatten())
    assert kinds["ntk_gram"] == [k for _, k in weight_layers(model)] and len(t["ntk_gram"]) == len(layers)
    total = 0
    for got, r in zip(t["ntk_gram"], rows, strict=True):
        j = torch.stack(r)
        total = total + j @ j.T
        assert torch.allclose(got.double(), j @ j.T, rtol=1e-4, atol=1e-6 * float((j @ j.T).abs().max()))
    ev = torch.linalg.eigvalsh(total)
    assert float(t["ntk_cond"][0]) == pytest.approx(float(ev[-1] / ev[0]), rel=1e-4)


@pytest.mark.parametrize("space", ["pit", "autoformer"])
def test_shared_jacobian_and_ntk_run_equals_each_pass_alone(space, tiny_batch):
    """Asked together, the two passes run one forward and backward (``run_groups``), and every value is
    the one each pass gives alone, bit for bit."""
    assert [g for g, _ in run_groups(["ntk", "base", "jacobian"])] == [("jacobian", "ntk"), ("base",)]
    assert [g for g, _ in run_groups(["ntk", "jacobian"], ["ntk_cond"])] == [("jacobian",), ("ntk",)]
    model = get_space(space).build(SMALL[space], num_classes=10, img_size=32, seed=0)
    args = (model, tiny_batch.images, tiny_batch.labels, 3, {}, None)
    alone = {**jacobian.jacobian_pass(*args)[0], **ntk.ntk_pass(*args)[0]}
    both = ntk.jacobian_ntk_pass(*args)[0]
    assert sorted(both) == sorted(alone) == ["epe_nas", "logit_jacobian_corr", "ntk_cond", "ntk_gram"]
    for f, vs in alone.items():
        assert len(both[f]) == len(vs) and all(torch.equal(a, b) for a, b in zip(both[f], vs))


def test_swap_counts_patterns_over_every_image_of_the_batch():
    """SWAP's Transformer script scores its whole input batch: with 20 images a neuron's pattern has
    20 signs (16, its CNN default, would cap the count at 2^16 and merge these patterns)."""
    model = get_space("pit").build(SMALL["pit"], num_classes=10, img_size=32)
    images = torch.randn(20, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    codes = []
    hooks = [m.register_forward_hook(lambda m, i, o: codes.append((i[0] > 0).reshape(20, -1).T))
             for m in model.modules() if isinstance(m, torch.nn.GELU)]
    with torch.no_grad():
        model.eval()(images)
    for h in hooks:
        h.remove()
    rows = torch.cat(codes)
    want = len({tuple(r) for r in rows.tolist()})
    assert want > len({tuple(r) for r in rows[:, :16].tolist()})  # the last 4 images split patterns
    got, _, _ = features.features_pass(model, images, torch.zeros(20, dtype=torch.long), 0, {},
                                       families=("swap_patterns",))
    assert float(got["swap_patterns"][0]) == want


@pytest.mark.parametrize("shape", [(2, 50, 8), (1, 3, 40)])  # tall and wide (B * tokens) x width matrices
def test_stable_rank_is_frobenius_over_spectral_squared(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    m = x.double().reshape(-1, shape[-1]).numpy()
    want = (m ** 2).sum() / (np.linalg.svd(m, compute_uv=False)[0] ** 2 + 1e-6)
    assert float(features.stable_rank(x)) == pytest.approx(want, rel=1e-12)
