"""Atomic file writes (a crash never leaves a half-written output), and output-folder checks."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` then rename it into place, with the mode an
    ordinary ``open(path, "w")`` gives (0o666 less the umask; ``mkstemp`` itself makes 0o600)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_writable_dir(folder: str | Path) -> None:
    """``ValueError`` unless ``folder`` is (or can be made) a writable folder; creates nothing."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise ValueError(f"output {p} is a file, not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"output {p} cannot be written ({probe} is not a writable folder)")
