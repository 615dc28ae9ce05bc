"""Faults while a reader runs, in two processes: a cache entry truncated and rewritten in place under
a live reader gives one error line or the true values, never SIGBUS and never other values; an entry
another process replaces by a rename (saving the same arch) is still read."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib

import numpy as np
import torch

from autoprox.stats.provider import StatsProvider
from tests.conftest import PIT_SMALL


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


def test_a_held_entry_replaced_by_another_writer_reads_what_was_checked(tiny_scoring):
    """Another process saving the same key replaces the file by a rename: a reader holding the old
    file goes on reading the bytes it checked (the unlink changes only that file's ctime)."""
    p = StatsProvider("pit", tiny_scoring)
    held = p.get(PIT_SMALL, {"weight"})
    read = p.cache.load("pit", p.key(PIT_SMALL))
    path = p.cache.path("pit", p.key(PIT_SMALL))
    data = bytearray(path.read_bytes())
    tmp = path.with_name(".other.tmp")
    tmp.write_bytes(bytes(data[:-8]) + bytes(8))  # other bytes: what the reader holds must not change
    os.replace(tmp, path)
    assert all(torch.equal(a, b) for a, b in zip(read.tensors["weight"], held.tensors["weight"], strict=True))
