"""Compact statistics: what one arch's cache entry costs, entries of older pass versions, and the memory
a pass frees."""
import dataclasses
import resource
import sys
from pathlib import Path

import pytest
import torch

from autoprox.stats.base import StatsConfig
from autoprox.stats.cache import StatsCache
from autoprox.stats.batch import BatchConfig
from autoprox.stats.provider import ScoringConfig, StatsProvider


def test_one_tiny_arch_fits_the_cache_budget(tmp_path):
    """The largest AutoFormer-Tiny arch's base entry (ZiCo included) stays under 16 MiB: weight-shaped
    families keep 32 output units per layer. Activations are subsampled to 4 images x 8 tokens at any
    batch of >= 4 images and >= 8 tokens, so 4 images at 64 px give the default batch's file size
    but for the (B x B) matrices; with every output unit kept, the entry is several times larger."""
    arch = {"hidden_dim": 240, "depth": 14, "mlp_ratio": [4.0] * 14, "num_heads": [4] * 14}
    batch = BatchConfig(size=4, resolution=64, num_classes=100)

    def size(rows: int) -> int:
        cfg = ScoringConfig(batch=batch, stats=StatsConfig(weight_rows=rows), cache_dir=str(tmp_path / str(rows)))
        p = StatsProvider("autoformer-tiny", cfg)
        p.get(arch, {"weight", "grad_snr", "linear_input"})
        return p.cache.path("autoformer-tiny", p.key(arch)).stat().st_size
    compact, full = size(32), size(10_000)
    assert compact < 16 * 2**20 < full / 3


def _legacy_entry(p, arch, pass_name, family, mig):
    """Store ``arch``'s ``pass_name`` entry under its pre-0.2 key (code hash, no key in its header)."""
    from autoprox.stats.cache import read_header, with_meta
    want = p.get(arch, {family})
    new = p.cache.path("pit", p.key(arch, pass_name))
    buf = new.read_bytes()
    meta = {k: v for k, v in read_header(buf)[0]["meta"].items() if k != "key"}
    old = p.cache.path("pit", mig.legacy_key(p, arch, pass_name))
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(with_meta(buf, meta))
    new.unlink()
    return want, new, old


def test_migrate_rekeys_entries_of_the_old_format(tiny_scoring, teacher_file, monkeypatch):
    """An entry of a pass still at version 1 stored under the pre-0.2 key is renamed to its versioned
    key without recomputing (then a cache hit with the same values); a base entry, whose values changed
    with version 2, is left alone."""
    import torch as _torch
    from autoprox.data.benchmark import load_archs
    from autoprox.stats import migrate as mig
    import autoprox.stats.provider as prov
    cfg = dataclasses.replace(tiny_scoring, teacher=teacher_file)
    arch = load_archs("pit")[1][0]
    p = StatsProvider("pit", cfg)
    monkeypatch.setattr(_torch, "__version__", "2.13.0+cpu")  # the legacy hashes are known for 2.13.0
    want, new, old = _legacy_entry(p, arch, "teacher", "teacher_gap", mig)
    _, new_base, old_base = _legacy_entry(p, arch, "base", "weight", mig)
    assert StatsCache(cfg.cache_dir).load("pit", p.key(arch, "teacher")) is None
    assert mig.migrate("pit", cfg) == 1
    assert new.is_file() and not old.exists()
    assert old_base.is_file() and not new_base.exists()  # version 1 values never become version 2
    monkeypatch.setattr(prov, "extract", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    got = StatsProvider("pit", cfg).get(arch, {"teacher_gap"})
    assert all(torch.equal(a, b) for a, b in zip(got.get("teacher_gap"), want.get("teacher_gap")))
    monkeypatch.setattr(_torch, "__version__", "9.9.9")
    with pytest.raises(ValueError, match="torch 2.13.0 only"):
        mig.migrate("pit", cfg)


@pytest.mark.parametrize("shares", [(0.25, 0.25, 0.25, 0.25), (0.3, 0.3, 0.4)])
def test_chunk_sums_match_every_chunk_kept(shares):
    """The running sums give the batch gradient and ZiCo's mean |g_c| / std g_c of the chunks' own
    gradients as when every chunk's gradient is kept (two-pass std), with equal and unequal shares."""
    from autoprox.stats.collect import ChunkSums
    gen = torch.Generator().manual_seed(0)
    own = [[torch.randn(6, 5, generator=gen) + 3, torch.randn(4, generator=gen)] for _ in shares]
    own[0][1][0] = own[1][1][0] = own[-1][1][0] = 1.5  # a weight whose gradient never varies: SNR 0
    if len(shares) == 4:
        own[2][1][0] = own[3][1][0] = 1.5
    sums = ChunkSums(zico=True, equal_shares=len(set(shares)) == 1)
    for s, gs in zip(shares, own):
        sums.add([g * s for g in gs], s)
    kept, per = sums.snr(weight_rows=100)
    for i in range(2):
        g = torch.stack([gs[i] for gs in own])
        assert torch.allclose(sums.total[i], sum(s * gs[i] for s, gs in zip(shares, own)), rtol=1e-6)
        std = g.std(0, unbiased=False)
        want = torch.where(std > 1e-6, g.abs().mean(0) / std, torch.zeros_like(std))
        assert torch.allclose(kept[i], want, rtol=1e-4)
        assert float(per[i]) == pytest.approx(float(want.sum()), rel=1e-4)
    assert float(kept[1][0]) == 0.0


def test_freed_memory_goes_back_on_linux():
    """Blocks below the mmap threshold come from the heap and stay resident when freed (no fault
    per tensor on reuse) until the trim gives their pages back."""
    from autoprox.core.memory import return_freed_memory, trim_freed_memory
    if not sys.platform.startswith("linux"):
        assert return_freed_memory() is False and trim_freed_memory() is False
        return

    def resident_mib() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20

    assert return_freed_memory() is True
    blocks = [bytearray(1 << 20) for _ in range(256)]  # 256 MiB of 1 MiB blocks, zero-filled: resident
    full = resident_mib()
    kept = blocks[1::2]  # every other block stays live, so free() alone cannot shrink the heap
    del blocks
    freed = resident_mib()
    assert freed > full - 16  # from the heap, not each its own mapping (a threshold above 1 MiB)
    assert trim_freed_memory() is True
    assert resident_mib() < freed - 100
    assert len(kept) == 128


HOLES = """
from autoprox.core.memory import return_freed_memory, trim_freed_memory
def holes():
    blocks = [bytearray(1 << 20) for _ in range(64)]
    kept = blocks[1::2]
    del blocks
    return kept
k1 = holes()
print(trim_freed_memory(), end=" ")
print(return_freed_memory(), end=" ")
k2 = holes()
print(trim_freed_memory())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_only_autoprox_processes_trim():
    """A process that imports autoprox keeps glibc's defaults and is never trimmed; the CLI's (which
    fixes the threshold) and a Ray worker's (started with ``ENV``) are."""
    import os
    import subprocess
    from autoprox.core.memory import ENV
    plain = {k: v for k, v in os.environ.items() if k not in ENV}

    def trims(env: dict) -> list[str]:
        return subprocess.run([sys.executable, "-c", HOLES], env=env, capture_output=True, text=True).stdout.split()
    assert trims(plain) == ["False", "True", "True"]
    assert trims({**plain, **ENV}) == ["True", "True", "True"]


def test_the_provider_trims_after_each_arch_it_computes(tiny_scoring, monkeypatch):
    """Freed pages go back after each computed arch (one trim per arch, whatever its passes); an arch
    read from the cache allocates no activations and trims nothing."""
    import autoprox.stats.provider as prov
    from autoprox.data.benchmark import load_archs
    trims = []
    monkeypatch.setattr(prov, "trim_freed_memory", lambda: trims.append(1) or True)
    archs = load_archs("pit")[1][:2]
    p = StatsProvider("pit", tiny_scoring)
    for a in archs:
        p.get(a, {"weight", "token_entropy"})  # the base and features passes
    assert len(trims) == 2
    for a in archs:
        p.get(a, {"weight", "token_entropy"})
    assert len(trims) == 2
