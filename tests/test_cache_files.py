"""Cache entries are read with pread, not mapped: the crc is checked chunk by chunk, bad files
stay misses, a tensor is read when it is accessed, and a file changed under a reader is one error."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib

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
        assert "changed in place while being read" in str(e)
    else:
        raise AssertionError("a replaced file was read as if it were the loaded one")
    assert torch.equal(held.tensors["weight"][0], p.cache.load("pit", p.key(PIT_SMALL)).tensors["weight"][0])


READER = """
import os, sys, numpy as np
from autoprox.stats.cache import StatsCache
path, space, key, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
want = np.load(sys.argv[5])
cache, ok, refused, missed = StatsCache(os.path.dirname(os.path.dirname(os.path.dirname(path)))), 0, 0, 0
for _ in range(rounds):
    s = cache.load(space, key)
    if s is None:
        missed += 1
        continue
    try:
        for _ in range(20):
            got = s.tensors["weight"][0].numpy()
            assert np.array_equal(got, want), "wrong values"
            ok += 1
    except RuntimeError as e:
        assert "changed in place" in str(e), e
        refused += 1
print(ok, refused, missed)
"""


def test_an_entry_cut_and_rewritten_under_a_live_reader(tiny_scoring, tmp_path):
    """Two processes: a reader loads and reads an entry in a loop while this one truncates it in
    place and writes it back, over and over. A memory-mapped reader is killed by SIGBUS here
    (the check-then-read window); a pread reader refuses with one line or gets the true values."""
    p = StatsProvider("pit", tiny_scoring)
    want = p.get(PIT_SMALL, {"weight"}).tensors["weight"][0].numpy()
    key = p.key(PIT_SMALL)
    path = p.cache.path("pit", key)
    good = path.read_bytes()
    ref = tmp_path / "want.npy"
    import numpy as np
    np.save(ref, want)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "pit", key, "3000", str(ref)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cuts = 0
    while reader.poll() is None:
        with open(path, "r+b") as f:  # in place, as a careless or hostile process would
            f.truncate(len(good) // 3)
            f.seek(0)
            f.write(good)
        cuts += 1
        time.sleep(0.001 * (cuts % 3))  # whole for a while now and then, so some loads pass
    out, err = reader.communicate()
    assert reader.returncode == 0, (reader.returncode, err[-800:])  # -7 is SIGBUS
    ok, refused, missed = map(int, out.split())
    assert cuts > 100 and ok > 0 and ok + refused + missed > 0, (cuts, ok, refused, missed)
    assert zlib.crc32(path.read_bytes()) == zlib.crc32(good)
