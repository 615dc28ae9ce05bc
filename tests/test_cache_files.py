"""Cache entries are read with pread, not mapped: the crc is checked chunk by chunk, bad files
stay misses, a tensor is read when it is accessed, and a replaced file is one error (a file changed
under a live reader: ``test_faults_live.py``)."""
from __future__ import annotations

import os

import torch

from autoprox.stats import cache as cache_mod
from autoprox.stats.cache import decode
from autoprox.stats.provider import StatsProvider
from tests.conftest import PIT_SMALL


def test_entries_check_every_chunk_and_read_on_access(tiny_scoring, monkeypatch):
    monkeypatch.setattr(cache_mod, "_CRC_CHUNK", 4096)  # many chunks even for a tiny file
    p = StatsProvider("pit", tiny_scoring)
    p.get(PIT_SMALL, {"weight"})
    key = p.key(PIT_SMALL)
    path = p.cache.path("pit", key)
    good = path.read_bytes()
    assert len(good) > 4 * 4096
    got = p.cache.load("pit", key)
    want = decode(bytearray(good), key)
    assert got.tensors["weight"].from_file and not want.tensors["weight"].from_file
    reads = []
    real = os.pread
    monkeypatch.setattr(cache_mod.os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    for f in want.tensors:
        assert all(torch.equal(a, b) for a, b in zip(got.tensors[f], want.tensors[f], strict=True))
    assert len(reads) == sum(len(t) for t in want.tensors.values())  # one read per tensor, none held
    for at in (len(good) - 5, len(good) // 2, 20):  # last chunk, a middle one, the header
        path.write_bytes(good[:at] + bytes([good[at] ^ 1]) + good[at + 1:])
        assert p.cache.load("pit", key) is None
    path.write_bytes(b"")
    assert p.cache.load("pit", key) is None
    path.unlink()
    path.mkdir()
    assert p.cache.load("pit", key) is None


def test_without_spare_descriptors_entries_open_their_path_per_read(tiny_scoring, monkeypatch):
    """At half the descriptor limit a loaded entry holds none; it opens the file at each read and
    refuses one that was replaced meanwhile (another inode)."""
    p = StatsProvider("pit", tiny_scoring)
    held = p.get(PIT_SMALL, {"weight"})
    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(cache_mod, "_open_fds", lambda: 10**9)
    read = p.cache.load("pit", p.key(PIT_SMALL))
    assert len(os.listdir("/proc/self/fd")) == before  # no descriptor kept
    assert all(torch.equal(a, b) for a, b in zip(read.tensors["weight"], held.tensors["weight"], strict=True))
    path = p.cache.path("pit", p.key(PIT_SMALL))
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)  # the same bytes under another inode
    try:
        read.tensors["weight"][0]
    except cache_mod.EntryChanged as e:
        assert "replaced while being read" in str(e)
    else:
        raise AssertionError("a replaced file was read as if it were the loaded one")
    assert torch.equal(held.tensors["weight"][0], p.cache.load("pit", p.key(PIT_SMALL)).tensors["weight"][0])

