"""Cache entries are memory-mapped: the crc is checked chunk by chunk, bad files stay misses."""
from __future__ import annotations

import mmap
import zlib

import torch

from autoprox.stats import cache as cache_mod
from autoprox.stats.cache import decode
from autoprox.stats.provider import StatsProvider
from tests.conftest import PIT_SMALL


def test_mapped_entries_check_every_chunk(tiny_scoring, monkeypatch):
    monkeypatch.setattr(cache_mod, "_CRC_CHUNK", mmap.PAGESIZE)  # many chunks even for a tiny file
    p = StatsProvider("pit", tiny_scoring)
    p.get(PIT_SMALL, {"weight"})
    key = p.key(PIT_SMALL)
    path = p.cache.path("pit", key)
    good = path.read_bytes()
    assert len(good) > 4 * mmap.PAGESIZE
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert cache_mod._crc32(m) == zlib.crc32(good[:-4])
    got = p.cache.load("pit", key)
    want = decode(bytearray(good), key)
    base = got.tensors["weight"]._raw[0][0].base  # a view of the mapping, not a copy
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    for f in want.tensors:
        assert all(torch.equal(a, b) for a, b in zip(got.tensors[f], want.tensors[f], strict=True))
    for at in (len(good) - 5, len(good) // 2, 20):  # last chunk, a middle one, the header
        path.write_bytes(good[:at] + bytes([good[at] ^ 1]) + good[at + 1:])
        assert p.cache.load("pit", key) is None
    path.write_bytes(b"")
    assert p.cache.load("pit", key) is None
    path.unlink()
    path.mkdir()
    assert p.cache.load("pit", key) is None


def test_without_spare_descriptors_entries_are_read(tiny_scoring, monkeypatch):
    """Before Python 3.13 a map holds a descriptor: at half the limit files are read instead."""
    p = StatsProvider("pit", tiny_scoring)
    mapped = p.get(PIT_SMALL, {"weight"})
    monkeypatch.setattr(cache_mod, "_open_fds", lambda: 10**9)
    read = p.cache.load("pit", p.key(PIT_SMALL))
    import sys
    assert read.tensors["weight"].mapped is (sys.version_info >= (3, 13))
    assert all(torch.equal(a, b) for a, b in zip(read.tensors["weight"], mapped.tensors["weight"], strict=True))
