"""On-disk statistics cache: one checksummed file per (arch, batch, seed, config, code).

File layout: ``MAGIC | u64 header length | JSON header | payload | u32 crc32`` where
the crc covers everything before it. A file that is truncated, corrupt, or of
another format is reported as a miss (and recomputed by the caller), never used.
float16 storage divides each tensor by its max |value| first (kept in the header),
so tiny gradients do not underflow; tensors become float32 when first read.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import struct
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping, MutableSequence

import numpy as np
import torch

try:
    import resource
except ImportError:  # not on Unix
    resource = None  # type: ignore[assignment]

from autoprox.core.io import atomic_write_bytes
from autoprox.stats.base import ArchStats

MAGIC = b"APXSTAT1"


def default_cache_dir() -> Path:
    """``$AUTOPROX_CACHE``, else ``$XDG_CACHE_HOME/autoprox``, else ``~/.cache/autoprox``."""
    if os.environ.get("AUTOPROX_CACHE"):
        return Path(os.environ["AUTOPROX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autoprox"


def cache_key(parts: Mapping[str, Any]) -> str:
    """Hash of everything that changes the values one statistics pass stores."""
    return hashlib.sha256(json.dumps(dict(parts), sort_keys=True).encode()).hexdigest()[:32]


class LazyList(MutableSequence):
    """Per-layer tensors decoded from the file buffer to float32 at each access.

    Nothing is kept besides the buffer, so held statistics stay at their stored
    size; callers that reuse a tensor (the graph evaluator's memo) keep it. When the
    buffer is a memory-mapped cache file (``mapping``: the map and its address), the
    pages an access read are given back right after it: held statistics cost no memory
    until they are read, and then only while the decoded tensor lives.
    """

    def __init__(self, raw: list[tuple[np.ndarray, float, tuple]],
                 mapping: tuple[mmap.mmap, int] | None = None, origin: tuple[str, int, int, int] | None = None) -> None:
        self._raw = raw
        self._map = mapping
        self._origin = origin  # (path, inode, size, mtime_ns) of a mapped file

    def _check_whole(self) -> None:
        """A mapped file cut short in place (not by autoprox, which only renames) would kill the
        process with SIGBUS on the next page read, and one rewritten in place would give another
        entry's values: refuse with one line instead."""
        if self._origin is None:
            return
        path, ino, size, mtime = self._origin
        try:
            st = os.stat(path)
        except OSError:  # removed or replaced: the mapping keeps the old file whole
            return
        if st.st_ino == ino and (st.st_size < size or st.st_mtime_ns != mtime):
            raise RuntimeError(f"cache entry {path} was changed in place while being read; run again "
                               f"(autoprox recomputes an entry it cannot use)")

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        self._check_whole()
        arr, scale, shape = self._raw[range(len(self))[i]]
        t = torch.from_numpy(arr.astype(np.float32, copy=True)).reshape(shape)
        if self._map is not None and arr.nbytes:
            _give_back(self._map, arr)
        return t.mul_(scale) if scale != 1.0 else t

    def __len__(self) -> int:
        return len(self._raw)

    def shapes(self) -> list[tuple]:
        """Each tensor's shape, without decoding it."""
        return [tuple(shape) for _, _, shape in self._raw]

    def encoded(self) -> list[tuple[np.ndarray, float, tuple]]:
        """The stored (array, scale, shape) of each tensor, for a caller that decodes many at once
        (``decode_stack``); ``release`` gives their pages back after."""
        self._check_whole()
        return list(self._raw)

    def release(self) -> None:
        """Give back the pages of every stored array of a mapped file (once, over their span)."""
        arrs = [a for a, _, _ in self._raw if a.nbytes]
        if self._map is None or not arrs:
            return
        lo = min(a.ctypes.data for a in arrs)
        _give_back_span(self._map, lo, max(a.ctypes.data + a.nbytes for a in arrs) - lo)

    @property
    def mapped(self) -> bool:
        """Views of a memory-mapped file (resident only while read)."""
        return self._map is not None

    def owned(self) -> "LazyList":
        """The same tensors in their own memory, not views of the file buffer."""
        return LazyList([(a.copy(), scale, shape) for a, scale, shape in self._raw])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))

    def __setitem__(self, i, v):  # read-only
        raise TypeError("cached statistics are read-only")

    __delitem__ = __setitem__

    def insert(self, i, v):
        raise TypeError("cached statistics are read-only")


def _map_file(f: Any) -> mmap.mmap | None:
    """``f`` mapped read-only; None when it should be read instead: before Python 3.13 each map
    holds a duplicate file descriptor, so maps stop at half the process's descriptor limit."""
    if sys.version_info >= (3, 13):
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ, trackfd=False)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if resource is not None else None
    if soft is not None and soft != resource.RLIM_INFINITY and _open_fds() >= soft // 2:
        return None
    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: assume few
        return 0


FAULT_AROUND = 1 << 16  # Linux maps up to 64 KiB of cached pages around a faulting one (fault_around_bytes)


def _give_back(mapping: tuple[mmap.mmap, int], arr: np.ndarray) -> None:
    """Drop the pages under ``arr``, and those a page fault mapped around them, from this process
    (they stay in the page cache): without the margin, reading 58 one-number arrays of a file left
    up to 64 KiB each resident."""
    _give_back_span(mapping, arr.ctypes.data, arr.nbytes)


def _give_back_span(mapping: tuple[mmap.mmap, int], address: int, nbytes: int) -> None:
    m, addr = mapping
    drop = getattr(mmap, "MADV_DONTNEED", None)
    if drop is not None:
        start = address - addr
        lo = max(0, start - FAULT_AROUND)
        lo -= lo % mmap.PAGESIZE
        m.madvise(drop, lo, min(len(m), start + nbytes + FAULT_AROUND) - lo)


def decode_stack(encoded: list[tuple[np.ndarray, float, tuple]]) -> torch.Tensor:
    """The (n, *shape) float32 stack of n stored tensors of one shape: the values ``LazyList``
    decodes one at a time (float32 of the stored array, times its scale in float32)."""
    shape = tuple(encoded[0][2])
    x = torch.from_numpy(np.stack([a for a, _, _ in encoded]).astype(np.float32, copy=False))
    scales = torch.tensor([s for _, s, _ in encoded], dtype=torch.float32)
    return x.reshape(len(encoded), *shape).mul_(scales.reshape(-1, *(1,) * len(shape)))


def select(stats: ArchStats, families: Collection[str]) -> ArchStats:
    """``stats`` restricted to ``families`` (scalars kept). Kept tensors of an in-memory buffer
    are copied out of it, so the buffer (the whole pass) can be freed once nothing else holds it;
    those of a memory-mapped file stay views (not resident until read)."""
    keep = {f: t for f, t in stats.tensors.items() if f in families}
    if len(keep) == len(stats.tensors):
        return stats
    tensors = {f: t.owned() if isinstance(t, LazyList) and not t.mapped else t for f, t in keep.items()}
    return ArchStats(tensors, {f: stats.kinds[f] for f in keep}, dict(stats.scalars))  # type: ignore[arg-type]


def encode(stats: ArchStats, dtype: str, meta: Mapping[str, Any]) -> bytes:
    """Serialise ``stats`` (tensors in ``dtype``) with a crc32 trailer."""
    np_dtype = np.float16 if dtype == "float16" else np.float32
    entries, chunks, offset = [], [], 0
    for family, tensors in stats.tensors.items():
        for t in tensors:
            a = t.detach().float().cpu().numpy()
            scale = 1.0
            if np_dtype == np.float16 and a.size:
                m = float(np.max(np.abs(a)))
                scale = m if np.isfinite(m) and m > 0 else 1.0
            b = (a / scale).astype(np_dtype).tobytes()
            entries.append({"family": family, "shape": list(a.shape), "offset": offset,
                            "nbytes": len(b), "scale": scale})
            chunks.append(b)
            offset += len(b)
    header = json.dumps({"format": 1, "dtype": dtype, "entries": entries, "kinds": stats.kinds,
                         "scalars": stats.scalars, "meta": dict(meta), "payload": offset}).encode()
    body = MAGIC + struct.pack("<Q", len(header)) + header + b"".join(chunks)
    return body + struct.pack("<I", zlib.crc32(body))


_CRC_CHUNK = 1 << 23  # 8 MiB, a multiple of the page size


def _crc32(buf: bytes | bytearray | mmap.mmap) -> int:
    """crc32 of all but the 4-byte trailer. A memory map is read in chunks, each chunk's pages
    given back after it is summed (they stay in the page cache), so checking a file does not
    hold the whole file in this process's memory."""
    if not isinstance(buf, mmap.mmap):
        return zlib.crc32(memoryview(buf)[:-4])
    crc, end = 0, len(buf) - 4
    drop = getattr(mmap, "MADV_DONTNEED", None)
    with memoryview(buf) as mv:
        for off in range(0, end, _CRC_CHUNK):
            with mv[off:min(off + _CRC_CHUNK, end)] as chunk:
                crc = zlib.crc32(chunk, crc)
            if drop is not None:
                buf.madvise(drop, off, min(_CRC_CHUNK, len(buf) - off))
    return crc


def read_header(buf: bytes | bytearray | mmap.mmap) -> tuple[dict, int] | None:
    """(header, payload offset) of a whole, checksummed file; None if truncated, corrupt or foreign."""
    if len(buf) < len(MAGIC) + 12 or buf[: len(MAGIC)] != MAGIC:
        return None
    (crc,) = struct.unpack("<I", buf[-4:])
    if _crc32(buf) != crc:
        return None
    (hlen,) = struct.unpack("<Q", buf[len(MAGIC): len(MAGIC) + 8])
    start = len(MAGIC) + 8
    try:
        header = json.loads(bytes(buf[start: start + hlen]))
    except ValueError:
        return None
    base = start + hlen
    if not isinstance(header, dict) or base + header.get("payload", -1) + 4 != len(buf):
        return None
    return header, base


def with_meta(buf: bytes | bytearray, meta: Mapping[str, Any]) -> bytes | None:
    """The file ``buf`` with its header's meta replaced (payload untouched, new crc); None if unreadable."""
    got = read_header(buf)
    if got is None:
        return None
    header, base = got
    head = json.dumps({**header, "meta": dict(meta)}).encode()
    body = MAGIC + struct.pack("<Q", len(head)) + head + bytes(buf[base:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def decode(buf: bytes | bytearray | mmap.mmap, key: str | None = None,
           origin: tuple[str, int, int, int] | None = None) -> ArchStats | None:
    """Inverse of ``encode``; None for anything truncated, corrupt or foreign, or (given ``key``)
    a file whose header names another key: a valid file of another arch is never used."""
    got = read_header(buf)
    if got is None:
        return None
    header, base = got
    if key is not None and header.get("meta", {}).get("key") != key:
        return None
    np_dtype = np.float16 if header["dtype"] == "float16" else np.float32
    mapping = (buf, np.frombuffer(buf, np.uint8, count=1).ctypes.data) if isinstance(buf, mmap.mmap) else None
    raw: dict[str, list] = {}
    for e in header["entries"]:
        arr = np.frombuffer(buf, dtype=np_dtype, count=e["nbytes"] // np.dtype(np_dtype).itemsize,
                            offset=base + e["offset"])
        raw.setdefault(e["family"], []).append((arr, e["scale"], tuple(e["shape"])))
    return ArchStats(tensors={f: LazyList(r, mapping, origin if mapping else None)  # type: ignore[misc]
                              for f, r in raw.items()},
                     kinds=header["kinds"], scalars=header["scalars"])


def as_stored(stats: ArchStats, dtype: str, meta: Mapping[str, Any]) -> ArchStats:
    """``stats`` exactly as a cache file would give them back (quantised to ``dtype``)."""
    return decode(bytearray(encode(stats, dtype, meta)))  # type: ignore[return-value]


class StatsCache:
    """Files under ``root/<space>/<key[:2]>/<key>.apx``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self._read_only = False

    def path(self, space: str, key: str) -> Path:
        return self.root / space / key[:2] / f"{key}.apx"

    def load(self, space: str, key: str) -> ArchStats | None:
        """The entry of ``key``, memory-mapped read-only: the crc check reads every page once,
        a chunk at a time (``_crc32``), giving the pages back; afterwards a tensor's pages are
        read when it is (``LazyList``), and the mapping goes with the last view of it. Files
        are only ever replaced by a rename, never truncated in place."""
        p = self.path(space, key)
        try:  # non-blocking: a FIFO in an entry's place must not wait for a writer
            with os.fdopen(os.open(p, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):  # a FIFO, device or socket: a miss
                    return None
                buf = _map_file(f)
                if buf is None:  # no file descriptors to spare: read the file into memory
                    buf = bytearray(st.st_size)
                    if f.readinto(buf) != len(buf):
                        return None
        except (OSError, ValueError):  # missing, a directory, unreadable, empty: a miss
            return None
        out = decode(buf, key, (str(p), st.st_ino, st.st_size, st.st_mtime_ns))
        if out is None and isinstance(buf, mmap.mmap):
            buf.close()
        return out

    def save(self, space: str, key: str, stats: ArchStats, dtype: str, meta: Mapping[str, Any]) -> ArchStats:
        """Write ``stats``; return them as stored, so a fresh and a cached result score alike.
        A cache that cannot be written (read-only, full, a directory in the way) is warned about
        once and skipped: the values are returned all the same."""
        data = encode(stats, dtype, {**meta, "key": key})
        if not self._read_only:
            try:
                atomic_write_bytes(self.path(space, key), data)
            except OSError as e:
                self._read_only = True
                warnings.warn(f"statistics cache {self.root} cannot be written ({e.strerror or e}); "
                              f"going on without storing", RuntimeWarning, stacklevel=2)
        return decode(bytearray(data))  # type: ignore[return-value]

    def clean_temporaries(self) -> int:
        """Remove ``.*.tmp`` files left by killed writes; their count."""
        from autoprox.core.checkpoint import clean_temporaries
        return clean_temporaries(self.root, "*/*/.*.tmp")
