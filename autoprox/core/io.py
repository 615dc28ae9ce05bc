"""Atomic file writes (a crash never leaves a half-written output), and output-folder checks."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from autoprox.core.errors import AutoproxError


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``os.umask`` sets
    one to read one: another thread could create a file in between)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new ``.<name>.<pid>-*.tmp`` file beside ``path`` (flushed to disk); its path. The
    writer's pid in the name lets ``clean_temporaries`` leave a live writer's files alone.
    Every write of autoprox goes through here (tests inject a full disk by replacing it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # the mode open() would give (mkstemp: 0o600)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` then rename it into place."""
    atomic_write_many({path: data})


class NotRegularFileError(OSError, ValueError, AutoproxError):
    """An output path taken by something other than a regular file (an OSError for writers that
    skip what they cannot write, a ValueError for the one-line CLI errors)."""


def check_regular_target(path: str | Path) -> None:
    """``NotRegularFileError`` when ``path`` exists and is not a regular file (a device, FIFO, socket, folder or
    link to one): an output replaces only files, never ``/dev/null`` and its kind."""
    p = Path(path)
    if (p.exists() or p.is_symlink()) and not (p.is_file() and not p.is_symlink()):
        what = "a folder" if p.is_dir() else "a link" if p.is_symlink() else "not a regular file"
        raise NotRegularFileError(f"{p} is {what}: autoprox writes its outputs as regular files only")


def atomic_write_many(files: dict) -> None:
    """Write every ``{path: bytes}`` to temp files first, then rename them all into place: a
    failed write (a full disk) leaves none of them new; only a crash between renames could."""
    for path in files:
        check_regular_target(path)
    tmps: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            tmps.append((write_temp(Path(path), data), Path(path)))
        for tmp, p in tmps:
            os.replace(tmp, p)
    except BaseException:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_writable_dir(folder: str | Path) -> None:
    """``ValueError`` unless ``folder`` is (or can be made) a writable folder; leaves nothing
    behind (as root ``os.access`` says yes to read-only places such as /proc, so the nearest
    existing folder is probed with an empty sub-folder, removed at once)."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise ValueError(f"output {p} is a file, not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    ok = probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)
    if ok:
        try:
            os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".autoprox-probe-"))
        except OSError:
            ok = False
    if not ok:
        raise ValueError(f"output {p} cannot be written ({probe} is not a writable folder)")
