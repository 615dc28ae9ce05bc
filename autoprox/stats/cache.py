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
import os
import stat
import struct
import warnings
import weakref
import zlib
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, MutableSequence

import numpy as np
import torch

try:
    import resource
except ImportError:  # not on Unix
    resource = None  # type: ignore[assignment]

from autoprox.core.errors import AutoproxError
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


class EntryChanged(RuntimeError, AutoproxError):
    """A cache file changed under a reader (cut short, rewritten in place, replaced or removed)."""


class _Buffer:
    """Bytes in this process's memory (statistics just computed and encoded, or copied out)."""

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self._buf = buf

    def read(self, offset: int, nbytes: int) -> memoryview:
        return memoryview(self._buf)[offset: offset + nbytes]


class _File:
    """A cache file read with ``pread`` where and when a tensor is read: nothing of it is resident
    in between, and a file cut short or rewritten in place under the reader is refused with one
    line (``EntryChanged``) where a memory map would be killed by SIGBUS or give other values.
    Holds a descriptor while there are plenty; else opens the path at each read and checks it is
    still the same file (inode, size, times)."""

    def __init__(self, path: str, fd: int, st: os.stat_result, hold: bool) -> None:
        self.path = path
        self._id = _identity(st)
        self._fd = fd if hold else None
        if hold:
            weakref.finalize(self, os.close, fd)

    def read(self, offset: int, nbytes: int) -> bytes:
        fd = self._fd if self._fd is not None else _open_entry(self.path)
        try:
            if self._fd is None and not self._same(os.fstat(fd)):
                raise EntryChanged(self._changed())
            data = os.pread(fd, nbytes, offset)
            if len(data) != nbytes or not self._same(os.fstat(fd)):
                raise EntryChanged(self._changed())
            return data
        finally:
            if self._fd is None:
                os.close(fd)

    def _same(self, st: os.stat_result) -> bool:
        """Whether the file read is still the one checked. A held file that another writer replaced
        by a rename (another process saving the same key) is unlinked, which changes only its ctime:
        its bytes are the ones checked, so it still is."""
        now = _identity(st)
        return now == self._id or (self._fd is not None and st.st_nlink == 0 and now[:3] == self._id[:3])

    def _changed(self) -> str:
        return (f"cache entry {self.path} was changed in place or replaced while being read; run again "
                f"(autoprox recomputes an entry it cannot use)")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _open_entry(path: str) -> int:
    """A read-only descriptor of the regular file ``path``. Anything else in an entry's place (a
    FIFO, socket, device, folder or link loop) is refused before it is opened; the open does not
    block either, so a FIFO swapped in meanwhile never waits for a writer (the caller checks the
    descriptor again)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise EntryChanged(f"cache entry {path} is not a regular file")
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise EntryChanged(f"cache entry {path} was removed while being read; run again") from e


class LazyList(MutableSequence):
    """Per-layer tensors decoded to float32 at each access from where they are stored.

    Nothing is kept besides the source, so held statistics stay at their stored size; callers
    that reuse a tensor (the graph evaluator's memo) keep it. From a cache file (``_File``), held
    statistics cost no memory until they are read, and then only while the decoded tensor lives.
    """

    def __init__(self, raw: list[tuple[tuple[int, int], float, tuple]], source: _Buffer | _File,
                 dtype: Any) -> None:
        self._raw = raw  # ((offset, nbytes) in the source, scale, shape) per tensor
        self._src = source
        self._dtype = np.dtype(dtype)

    def _array(self, span: tuple[int, int]) -> np.ndarray:
        return np.frombuffer(self._src.read(*span), self._dtype)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        span, scale, shape = self._raw[range(len(self))[i]]
        return decode_stack([(self._array(span), scale, shape)])[0]

    def __len__(self) -> int:
        return len(self._raw)

    def shapes(self) -> list[tuple]:
        """Each tensor's shape, without decoding it."""
        return [tuple(shape) for _, _, shape in self._raw]

    def nbytes(self) -> int:
        """Stored bytes of all the tensors."""
        return sum(n for (_, n), _, _ in self._raw)

    def encoded(self) -> list[tuple[np.ndarray, float, tuple]]:
        """The stored (array, scale, shape) of each tensor, for a caller that decodes many at once
        (``decode_stack``): one read over the family's span."""
        if not self._raw:
            return []
        lo = min(o for (o, _), _, _ in self._raw)
        whole = self._src.read(lo, max(o + n for (o, n), _, _ in self._raw) - lo)
        item = self._dtype.itemsize
        return [(np.frombuffer(whole, self._dtype, count=n // item, offset=o - lo), scale, shape)
                for (o, n), scale, shape in self._raw]

    @property
    def from_file(self) -> bool:
        """Read from a cache file at each access (not held in memory)."""
        return isinstance(self._src, _File)

    def owned(self) -> "LazyList":
        """The same tensors in their own memory, not views of a larger buffer or a file."""
        arrays = self.encoded()
        raw, chunks, offset = [], [], 0
        for a, scale, shape in arrays:
            raw.append(((offset, a.nbytes), scale, shape))
            chunks.append(a.tobytes())
            offset += a.nbytes
        return LazyList(raw, _Buffer(b"".join(chunks)), self._dtype)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))

    def __setitem__(self, i, v):  # read-only
        raise TypeError("cached statistics are read-only")

    __delitem__ = __setitem__

    def insert(self, i, v):
        raise TypeError("cached statistics are read-only")


def _spare_fds() -> bool:
    """Whether a loaded entry may hold a descriptor: under half of the process's limit are open."""
    if resource is None:
        return True
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft == resource.RLIM_INFINITY or _open_fds() < soft // 2


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: assume few
        return 0


def decode_stack(encoded: list[tuple[np.ndarray, float, tuple]]) -> torch.Tensor:
    """The (n, *shape) float32 stack of n stored tensors of one shape (float32 of each stored
    array times its scale in float32): the one decoding rule, ``LazyList`` included."""
    shape = tuple(encoded[0][2])
    x = torch.from_numpy(np.stack([a for a, _, _ in encoded]).astype(np.float32, copy=False))  # a copy
    scales = torch.tensor([s for _, s, _ in encoded], dtype=torch.float32)
    return x.reshape(len(encoded), *shape).mul_(scales.reshape(-1, *(1,) * len(shape)))


def select(stats: ArchStats, families: Collection[str]) -> ArchStats:
    """``stats`` restricted to ``families`` (scalars kept). Kept tensors of an in-memory buffer
    are copied out of it, so the buffer (the whole pass) can be freed once nothing else holds it;
    those of a cache file stay in the file (read when accessed)."""
    keep = {f: t for f, t in stats.tensors.items() if f in families}
    if len(keep) == len(stats.tensors):
        return stats
    tensors = {f: t.owned() if isinstance(t, LazyList) and not t.from_file else t for f, t in keep.items()}
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


_CRC_CHUNK = 1 << 23  # 8 MiB: a file is checked a chunk at a time, never held whole


def _header(read: Callable[[int, int], Any], size: int, crc: bool = True) -> tuple[dict, int] | None:
    """(header, payload offset) of a whole, checksummed file read through ``read(offset, n)``;
    None if truncated, corrupt or foreign. ``crc=False`` checks the lengths only (reads the header)."""
    start = len(MAGIC) + 8
    if size < start + 4 or bytes(read(0, len(MAGIC))) != MAGIC:
        return None
    if crc:
        (want,) = struct.unpack("<I", read(size - 4, 4))
        got = 0
        for off in range(0, size - 4, _CRC_CHUNK):
            got = zlib.crc32(read(off, min(_CRC_CHUNK, size - 4 - off)), got)
        if got != want:
            return None
    (hlen,) = struct.unpack("<Q", read(len(MAGIC), 8))
    if start + hlen + 4 > size:
        return None
    try:
        header = json.loads(bytes(read(start, hlen)))
    except ValueError:
        return None
    base = start + hlen
    if not isinstance(header, dict) or base + header.get("payload", -1) + 4 != size:
        return None
    return header, base


def read_header(buf: bytes | bytearray) -> tuple[dict, int] | None:
    """(header, payload offset) of a whole, checksummed file in memory; None if truncated,
    corrupt or foreign."""
    return _header(_Buffer(buf).read, len(buf))


def with_meta(buf: bytes | bytearray, meta: Mapping[str, Any]) -> bytes | None:
    """The file ``buf`` with its header's meta replaced (payload untouched, new crc); None if unreadable."""
    got = read_header(buf)
    if got is None:
        return None
    header, base = got
    head = json.dumps({**header, "meta": dict(meta)}).encode()
    body = MAGIC + struct.pack("<Q", len(head)) + head + bytes(buf[base:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def decode(buf: bytes | bytearray, key: str | None = None) -> ArchStats | None:
    """Inverse of ``encode`` for a file in memory; None for anything truncated, corrupt or
    foreign, or (given ``key``) a file whose header names another key."""
    return _decode(_Buffer(buf), len(buf), key)


def _decode(source: _Buffer | _File, size: int, key: str | None) -> ArchStats | None:
    got = _header(source.read, size)
    if got is None:
        return None
    header, base = got
    if key is not None and header.get("meta", {}).get("key") != key:  # a valid file of another arch
        return None
    np_dtype = np.float16 if header["dtype"] == "float16" else np.float32
    raw: dict[str, list] = {}
    for e in header["entries"]:
        raw.setdefault(e["family"], []).append(((base + e["offset"], e["nbytes"]), e["scale"], tuple(e["shape"])))
    return ArchStats(tensors={f: LazyList(r, source, np_dtype) for f, r in raw.items()},  # type: ignore[misc]
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
        """The entry of ``key``, or None (a miss) when it is missing, not a regular file, truncated,
        corrupt, another key's, or changed while being checked. The crc is checked a chunk at a
        time; afterwards a tensor is read from the file when it is (``_File``). Files are only ever
        replaced by a rename, never changed in place, by autoprox."""
        p = str(self.path(space, key))
        try:
            fd = _open_entry(p)
        except EntryChanged:  # missing: a miss
            return None
        hold = False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a FIFO, device, socket or directory: a miss
                return None
            hold = _spare_fds()
            return _decode(_File(p, fd, st, hold), st.st_size, key)
        except (OSError, ValueError, EntryChanged):  # unreadable, or changed while checked: a miss
            return None
        finally:
            if not hold:
                os.close(fd)

    def whole(self, space: str, key: str) -> bool:
        """Whether the entry of ``key`` is on disk at the length its header gives: a quick look that
        reads the header only (the crc is checked when the entry is loaded)."""
        try:
            fd = _open_entry(str(self.path(space, key)))
        except EntryChanged:
            return False
        try:
            return _header(lambda off, n: os.pread(fd, n, off), os.fstat(fd).st_size, crc=False) is not None
        except (OSError, ValueError, TypeError):
            return False
        finally:
            os.close(fd)

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
