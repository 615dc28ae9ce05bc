import dataclasses
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autoprox.stats.batch import BatchConfig, BatchError, make_batch
from autoprox.stats.cache import StatsCache, decode, encode
from autoprox.stats.provider import StatsProvider
from autoprox.spaces import get_space, list_spaces
from autoprox.stats.collect import token_index
from autoprox.stats.base import StatsConfig
from autoprox.stats.extract import extract
from autoprox.stats.passes import BASE_FAMILIES, families_of_passes, get_pass, list_passes

MODEL_PASSES = tuple(p for p in list_passes() if not get_pass(p).needs)  # no teacher needed
MODEL_FAMILIES = families_of_passes(MODEL_PASSES)

from conftest import SMALL


def test_synthetic_batch_is_deterministic(tiny_batch_cfg):
    a, b = make_batch(tiny_batch_cfg), make_batch(tiny_batch_cfg)
    assert torch.equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert a.images.shape == (4, 3, 32, 32) and a.labels.max() < 10
    other = make_batch(BatchConfig(size=4, resolution=32, num_classes=10, seed=1))
    assert other.fingerprint != a.fingerprint


def test_batch_does_not_depend_on_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = make_batch(BatchConfig())  # the default 32 x 224 batch: reductions big enough to split
        torch.set_num_threads(4)
        four = make_batch(BatchConfig())
        assert torch.get_num_threads() == 4  # left as it was
    finally:
        torch.set_num_threads(before)
    assert one.fingerprint == four.fingerprint and torch.equal(one.images, four.images)


def test_cifar100_source(tmp_path):
    rng = np.random.default_rng(0)
    data = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"fine_labels": list(range(20))}
    (tmp_path / "train").write_bytes(pickle.dumps(data))
    b = make_batch(BatchConfig(source="cifar100", path=str(tmp_path), size=8, resolution=48, num_classes=100))
    assert b.images.shape == (8, 3, 48, 48)
    assert set(b.labels.tolist()) <= set(range(20))
    with pytest.raises(BatchError, match="fewer than batch size"):
        make_batch(BatchConfig(source="cifar100", path=str(tmp_path), size=30))


class _Payload:
    """Unpickling this calls a function of the pickler's choosing (here one that leaves a mark)."""

    def __reduce__(self):
        return (os.putenv, ("AUTOPROX_PWNED", "1"))


def test_a_crafted_cifar_file_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOPROX_PWNED", raising=False)
    data = {b"data": np.zeros((20, 3072), dtype=np.uint8), b"fine_labels": list(range(20)), b"x": _Payload()}
    (tmp_path / "train").write_bytes(pickle.dumps(data))
    with pytest.raises(BatchError, match="is not a CIFAR-100 python pickle: it names (posix|os).putenv"):
        make_batch(BatchConfig(source="cifar100", path=str(tmp_path), size=8, resolution=32))
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('AUTOPROX_PWNED'))"],
                           capture_output=True, text=True)  # putenv reaches only children
    assert child.stdout.strip() == "None"


def test_folder_source(tmp_path):
    from PIL import Image
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 60, 3), 50 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    b = make_batch(BatchConfig(source="folder", path=str(tmp_path), size=6, resolution=32))
    assert b.images.shape == (6, 3, 32, 32) and sorted(b.labels.tolist()) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("cfg,msg", [
    (dict(source="folder"), "needs a path"), (dict(size=1), "batch.size"), (dict(resolution=8), "resolution"),
])
def test_bad_batch_config(cfg, msg):
    with pytest.raises(BatchError, match=msg):
        BatchConfig(**cfg)


def test_missing_batch_files(tmp_path):
    with pytest.raises(BatchError, match="not found"):
        make_batch(BatchConfig(source="folder", path=str(tmp_path / "none")))
    with pytest.raises(BatchError, match="not found"):
        make_batch(BatchConfig(source="cifar100", path=str(tmp_path / "none")))


def test_token_index_rule():
    assert token_index(197, 8).tolist() == [0, 28, 56, 84, 112, 140, 168, 196]
    assert token_index(5, 8).tolist() == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module", params=list_spaces())
def stats(request, tiny_batch):
    space = get_space(request.param)
    cfg = StatsConfig(act_samples=2, act_tokens=4)
    s = extract(space, SMALL[request.param], tiny_batch.images, tiny_batch.labels, 10, 0, cfg, passes=MODEL_PASSES)
    return request.param, s


def test_every_family_is_collected(stats):
    name, s = stats
    assert set(s.tensors) == set(MODEL_FAMILIES)
    n_lin = sum(k not in ("patch", "pool_conv") for k in s.kinds["weight"])
    assert len(s.get("linear_input")) == len(s.get("linear_input_grad")) == n_lin
    assert all(t.numel() > 0 for f in MODEL_FAMILIES for t in s.get(f))
    assert s.kinds["weight"][0] == "patch" and s.kinds["weight"][-1] == "head"
    assert all(t.shape[0] <= 2 for t in s.get("norm_output"))  # act_samples


def test_weight_grads_equal_a_plain_backward(stats, tiny_batch):
    """The base pass's gradients are the batch's mean cross-entropy's, run as grad_groups chunks of
    the batch seeded once (each chunk's loss scaled by its share)."""
    name, s = stats
    space = get_space(name)
    model = space.build(SMALL[name], num_classes=10, img_size=32, seed=0)
    model.train()
    images, labels = tiny_batch.images, tiny_batch.labels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(4):  # grad_groups = 4 chunks of one image
            (F.cross_entropy(model(images[i:i + 1]), labels[i:i + 1]) / 4).backward()
    from autoprox.stats.collect import weight_layers
    layers = [m for m, _ in weight_layers(model)]
    grads = [m.weight.grad for m in layers]
    kept = [r[torch.linspace(0, r.shape[0] - 1, 32).round().long().unique()] if r.shape[0] > 32 else r for r in grads]
    for g in s.get("weight_grad"):  # 32 evenly spaced output units of each layer, all inputs
        assert g.shape[0] <= 32 and any(torch.allclose(g, r, atol=1e-7) for r in kept if r.shape == g.shape)
    # the per-layer reductions are over every weight (float16 storage is exact for one number per layer)
    want_snip = sorted(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in layers)
    want_norm = sorted(float(m.weight.grad.norm()) for m in layers)
    assert sorted(float(x) for x in s.get("snip_saliency")) == pytest.approx(want_snip, rel=1e-5)
    assert sorted(float(x) for x in s.get("weight_grad_norm")) == pytest.approx(want_norm, rel=1e-5)


def test_matrix_statistics_known_structure(stats, tiny_batch):
    name, s = stats
    k = s.get("naswot_kernel")[0]
    corr = s.get("input_grad_corr")[0]
    assert k.shape == corr.shape == (4, 4)
    assert torch.allclose(torch.diagonal(corr), torch.ones(4), atol=1e-5)
    units = sum(t.shape[-1] for t in s.get("gelu_input"))  # per token, so diag >= units
    assert torch.all(torch.diagonal(k) >= units) and torch.allclose(k, k.T)


def test_extraction_is_deterministic(tiny_batch):
    space = get_space("pit")
    cfg = StatsConfig(act_samples=2, act_tokens=4)
    a = extract(space, SMALL["pit"], tiny_batch.images, tiny_batch.labels, 10, 3, cfg, passes=MODEL_PASSES)
    b = extract(space, SMALL["pit"], tiny_batch.images, tiny_batch.labels, 10, 3, cfg, passes=MODEL_PASSES)
    assert all(torch.equal(x, y) for f in MODEL_FAMILIES for x, y in zip(a.get(f), b.get(f)))


@pytest.mark.parametrize("family", BASE_FAMILIES)
def test_lean_extraction_gives_the_full_values_of_what_it_was_asked(stats, family, tiny_batch):
    name, full = stats
    cfg = StatsConfig(act_samples=2, act_tokens=4)
    lean = extract(get_space(name), SMALL[name], tiny_batch.images, tiny_batch.labels, 10, 0, cfg,
                   families={family})
    assert family in lean.tensors and lean.kinds[family] == full.kinds[family]
    assert all(torch.equal(a, b) for a, b in zip(lean.get(family), full.get(family), strict=True))
    if family == "weight_grad":  # no activation hooks, no virtual pass
        assert set(lean.tensors) == {"weight_grad"}


def test_uncached_provider_extracts_only_what_is_asked(tiny_scoring):
    from dataclasses import replace
    want = {"weight", "naswot_kernel"}
    provider = StatsProvider("pit", replace(tiny_scoring, use_cache=False))
    lean, full = provider.get(SMALL["pit"], want), provider.get(SMALL["pit"], BASE_FAMILIES)
    assert set(lean.tensors) == want
    assert all(torch.equal(a, b) for f in want for a, b in zip(lean.get(f), full.get(f), strict=True))


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 1e-3)])
def test_cache_roundtrip(stats, dtype, tol):
    _, s = stats
    d = decode(bytearray(encode(s, dtype, {"x": 1})))
    assert d.kinds == s.kinds and d.scalars == s.scalars
    for f in MODEL_FAMILIES:
        for x, y in zip(s.get(f), d.get(f)):
            assert x.shape == y.shape
            assert float((x - y).abs().max()) <= tol * float(x.abs().max()) + 1e-30


def test_corrupt_or_truncated_file_is_recomputed(tiny_scoring):
    p = StatsProvider("pit", tiny_scoring)
    first = p.get(SMALL["pit"], {"weight"})
    path = p.cache.path("pit", p.key(SMALL["pit"]))
    assert path.is_file()
    good = path.read_bytes()
    for bad in (good[:-100], good[:500] + bytes([good[500] ^ 1]) + good[501:], b"garbage"):
        path.write_bytes(bad)
        assert p.cache.load("pit", p.key(SMALL["pit"])) is None
        again = p.get(SMALL["pit"], {"weight"})
        assert torch.allclose(again.get("weight")[1], first.get("weight")[1], rtol=1e-3)
        assert path.read_bytes() == good  # rewritten, identical


def test_cache_key_tracks_everything_that_changes_values(tiny_scoring):
    from dataclasses import replace
    base = StatsProvider("pit", tiny_scoring).key(SMALL["pit"])
    for change in (dict(seed=1), dict(batch=replace(tiny_scoring.batch, seed=5)),
                   dict(stats=replace(tiny_scoring.stats, dtype="float32"))):
        assert StatsProvider("pit", replace(tiny_scoring, **change)).key(SMALL["pit"]) != base
    assert StatsCache(tiny_scoring.cache_dir).load("pit", base) is None


def test_fisher_of_the_head_matches_its_formula(tiny_batch):
    """Without DropPath the chunked pass equals one full-batch forward+backward."""
    space = get_space("autoformer")
    s = extract(space, SMALL["autoformer"], tiny_batch.images, tiny_batch.labels, 10, 0, StatsConfig(drop_path=0.0))
    model = space.build(SMALL["autoformer"], num_classes=10, img_size=32, seed=0, drop_path=0.0)
    seen = {}

    def keep(m, i, o):
        i[0].retain_grad()
        seen["x"] = i[0]
    model.head.register_forward_hook(keep)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        F.cross_entropy(model(tiny_batch.images), tiny_batch.labels).backward()
    x = seen["x"]
    want = 0.5 * (x.detach() * x.grad).pow(2).sum(1).mean()
    assert s.kinds["fisher"][-1] == "head"
    assert float(s.get("fisher")[-1]) == pytest.approx(float(want), rel=1e-5)


def test_cold_and_warm_cache_give_identical_statistics(tiny_scoring):
    cold = StatsProvider("pit", tiny_scoring).get(SMALL["pit"], {"weight_grad"})
    warm = StatsProvider("pit", tiny_scoring).get(SMALL["pit"], {"weight_grad"})
    assert all(torch.equal(a, b) for a, b in zip(cold.get("weight_grad"), warm.get("weight_grad")))


def _weight_loss(name, tiny_batch):
    """A drop-path-free model, its weight layers and loss(weights) for reference derivatives."""
    from torch.func import functional_call
    from autoprox.stats.collect import weight_layers
    model = get_space(name).build(SMALL[name], num_classes=10, img_size=32, seed=0, drop_path=0.0)
    order = []  # weight layers in forward order
    handles = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m, _ in weight_layers(model)]
    with torch.no_grad():
        model(tiny_batch.images[:1])
    for h in handles:
        h.remove()
    names = {id(m): n for n, m in model.named_modules()}
    keys = [names[id(m)] + ".weight" for m in order]
    ws = tuple(m.weight.detach().requires_grad_() for m in order)

    def loss(*w, images=tiny_batch.images, labels=tiny_batch.labels):
        return F.cross_entropy(functional_call(model, dict(zip(keys, w)), (images,)), labels)
    return model, ws, loss


@pytest.mark.parametrize("name", list_spaces())
def test_hessian_grad_is_hessian_times_gradient(name, tiny_batch):
    model, ws, loss = _weight_loss(name, tiny_batch)
    g = torch.autograd.grad(loss(*ws), ws)
    _, hvp = torch.autograd.functional.hvp(loss, ws, g)  # reference: torch's own H v
    s = extract(get_space(name), SMALL[name], tiny_batch.images, tiny_batch.labels, 10, 0,
                StatsConfig(drop_path=0.0), passes=("hessian",))
    got = s.get("hessian_grad")
    assert len(got) == len(hvp) == len(s.kinds["hessian_grad"])
    for a, b, w, sal in zip(got, hvp, ws, s.get("grasp_saliency")):
        b_rows = b[torch.linspace(0, b.shape[0] - 1, 32).round().long().unique()] if b.shape[0] > 32 else b
        assert torch.allclose(a, b_rows, rtol=1e-3, atol=1e-5 * float(b.abs().max()) + 1e-12)  # chunk sums: float32
        bw = b * w.detach()
        assert float(sal) == pytest.approx(float(bw.sum()), rel=1e-3, abs=1e-6 * float(bw.abs().sum()))


def test_grad_snr_is_mean_abs_over_std_of_split_gradients(tiny_batch):
    model, ws, loss = _weight_loss("pit", tiny_batch)
    per = [torch.autograd.grad(loss(*ws, images=tiny_batch.images[i:i + 2], labels=tiny_batch.labels[i:i + 2]), ws)
           for i in (0, 2)]  # grad_groups=2 on 4 images: images 0-1 and 2-3
    s = extract(get_space("pit"), SMALL["pit"], tiny_batch.images, tiny_batch.labels, 10, 0,
                StatsConfig(drop_path=0.0, grad_groups=2), passes=("base",))
    for i, (got, total) in enumerate(zip(s.get("grad_snr"), s.get("zico_snr"))):
        a, b = per[0][i], per[1][i]
        std = (a - b).abs() / 2  # population std of two values
        ref = torch.where(std > 0, (a.abs() + b.abs()) / 2 / std, torch.zeros_like(std))
        kept = ref[torch.linspace(0, ref.shape[0] - 1, 32).round().long().unique()] if ref.shape[0] > 32 else ref
        # |a - b| cancels where a ~ b: the ratio's float32 error grows with the ratio itself (~1e-7 x ratio)
        assert bool(((got - kept).abs() <= 1e-3 + (2e-3 + 1e-7 * kept.abs()) * kept.abs()).all())
        assert float(total) == pytest.approx(float(ref.sum()), rel=2e-3)


def test_optional_passes_are_cached_apart(tiny_scoring, monkeypatch):
    import autoprox.stats.provider as scoring
    calls = []
    real = scoring.extract
    monkeypatch.setattr(scoring, "extract", lambda *a, **k: calls.append(tuple(a[8])) or real(*a, **k))
    p = StatsProvider("pit", tiny_scoring)
    arch = SMALL["pit"]
    p.get(arch, {"weight"})
    base_file = p.cache.path("pit", p.key(arch, "base"))
    before = base_file.read_bytes()
    s = p.get(arch, {"weight", "hessian_grad"})
    assert calls == [("base",), ("hessian",)]  # base came from the cache, only the new pass ran
    assert base_file.read_bytes() == before and p.cache.path("pit", p.key(arch, "hessian")).is_file()
    assert set(s.tensors) == {"weight", "hessian_grad"}  # only what was asked is held
    p.get(arch, {"hessian_grad", "weight"})
    assert len(calls) == 2
    assert p.get(arch, ()).tensors == {}  # data-free: no pass at all


def test_held_families_are_copied_out_of_the_file_buffer(tiny_scoring):
    """Asking for part of a cached pass holds just that part, equal to the whole pass's values:
    read from the cache file when accessed (never resident), or, from an in-memory buffer,
    copies in their own memory (the buffer, with the other families, can be freed)."""
    p = StatsProvider("pit", tiny_scoring)
    whole = p.get(SMALL["pit"], BASE_FAMILIES)
    part = p.get(SMALL["pit"], {"weight", "attention"})
    assert set(part.tensors) == {"weight", "attention"} and part.scalars == whole.scalars
    for f in part.tensors:
        assert part.kinds[f] == whole.kinds[f] and part.tensors[f].from_file
        assert all(torch.equal(a, b) for a, b in zip(part.tensors[f], whole.tensors[f]))
    from autoprox.stats.cache import select
    buffered = decode(bytearray(p.cache.path("pit", p.key(SMALL["pit"])).read_bytes()))
    kept = select(buffered, {"weight"})
    whole_buf = buffered.tensors["weight"]._src._buf
    kept_buf = kept.tensors["weight"]._src._buf
    assert len(kept_buf) == kept.tensors["weight"].nbytes() < len(whole_buf)  # its own bytes only
    assert all(torch.equal(a, b) for a, b in zip(kept.tensors["weight"], whole.tensors["weight"]))


def test_pass_keys_depend_only_on_their_fields(tiny_scoring):
    from dataclasses import replace
    a = StatsProvider("pit", tiny_scoring)
    b = StatsProvider("pit", replace(tiny_scoring, stats=replace(tiny_scoring.stats, grad_groups=3)))
    c = StatsProvider("pit", replace(tiny_scoring, stats=replace(tiny_scoring.stats, act_tokens=3)))
    arch = SMALL["pit"]
    assert a.key(arch, "jacobian") == b.key(arch, "jacobian") == c.key(arch, "jacobian")
    assert a.key(arch, "hessian") == c.key(arch, "hessian") and a.key(arch, "base") != c.key(arch, "base")
    for p in ("base", "hessian"):  # both run the batch in grad_groups chunks
        assert a.key(arch, p) != b.key(arch, p)
    keys = {a.key(arch, p) for p in ("base", "hessian", "jacobian")}
    assert len(keys) == 3  # the pass is part of the key


def test_pass_registry_rules():
    from autoprox.stats.passes import register_pass
    assert list_passes()[-1] == "base"  # it alters the weights: every other pass runs first
    with pytest.raises(ValueError, match="belong to another pass"):
        register_pass("mine", families=("weight",), version=1)(lambda *a: ({}, {}, {}))
    with pytest.raises(KeyError, match="unknown statistics pass 'nope'"):
        get_pass("nope")
    with pytest.raises(KeyError, match="did you mean 'hessian'"):
        get_pass("hesian")


def test_a_cuda_cache_serves_a_machine_without_cuda(tmp_path, capsys):
    """Statistics computed on a GPU box and copied to a CPU box: bench reads them with --device cuda
    (here: CPU entries re-keyed as cuda ones); an arch not cached for cuda stops with one line."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from autoprox.cli.main import main
    from autoprox.core.config import load_config
    from autoprox.core.io import atomic_write_bytes
    from autoprox.data.benchmark import load_archs
    from autoprox.eval.bench import BenchConfig
    from autoprox.stats.cache import read_header, with_meta
    common = ["bench", "--space", "pit", "--proxy", "snip", "params", "--batch-size", "4", "--resolution", "32",
              "--num-classes", "10", "--cache-dir", str(tmp_path / "c")]
    assert main(common + ["--limit", "6", "--out", str(tmp_path / "cpu")]) == 0
    scoring = load_config(BenchConfig, tmp_path / "cpu" / "config.yaml").scoring
    cpu, gpu = StatsProvider("pit", scoring), StatsProvider("pit", dataclasses.replace(scoring, device="cuda"))
    for arch in load_archs("pit", None, 6)[1]:
        buf = cpu.cache.path("pit", cpu.key(arch)).read_bytes()
        meta = read_header(buf)[0]["meta"]
        atomic_write_bytes(gpu.cache.path("pit", gpu.key(arch)), with_meta(buf, {**meta, "key": gpu.key(arch)}))
    assert main(common + ["--limit", "6", "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 0
    assert (tmp_path / "gpu" / "scores.csv").read_text() == (tmp_path / "cpu" / "scores.csv").read_text()
    capsys.readouterr()
    assert main(common + ["--limit", "7", "--device", "cuda", "--out", str(tmp_path / "miss")]) == 2
    err = capsys.readouterr().err
    assert "not cached for cuda, and CUDA is not available" in err and err.count("\n") == 1
    assert not (tmp_path / "miss").exists()

