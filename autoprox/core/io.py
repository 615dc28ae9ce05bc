"""Atomic file writes (a crash never leaves a half-written output), output-folder checks, and the one
guard every reader passes: only regular files are opened for reading (``open_regular``)."""
from __future__ import annotations

import errno
import os
import stat
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


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_readable(path: str | Path, what: str) -> os.stat_result:
    """The status of ``path`` (a link followed) when it is a regular file, read without opening it:
    ``FileNotFoundError`` when nothing is there, ``NotRegularFileError`` naming what is (a FIFO,
    whose open would wait for a writer forever; a socket, a device, a folder, a link loop)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {p}") from None
    except OSError as e:
        why = "a symlink loop" if e.errno == errno.ELOOP else f"unreadable ({e.strerror or e})"
        raise NotRegularFileError(f"{what} {p} is {why}: autoprox reads regular files only") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(f"{what} {p} is {_kind(st.st_mode)}: autoprox reads regular files only")
    return st


def open_regular(path: str | Path, what: str):
    """``path`` opened for binary reading once ``check_readable`` passes; opened without blocking
    and checked again on the descriptor, so a FIFO swapped in between is refused, never waited on."""
    check_readable(path, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{what} {path} is {_kind(st.st_mode)}: autoprox reads regular files only")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, what: str) -> bytes:
    """The bytes of the regular file ``path`` (``open_regular``'s checks)."""
    with open_regular(path, what) as f:
        return f.read()


def read_regular_text(path: str | Path, what: str) -> str:
    """The text of the regular file ``path`` (``UnicodeDecodeError`` when it is not UTF-8)."""
    return read_regular(path, what).decode("utf-8")
