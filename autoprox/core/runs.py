"""Run folders: which verb owns one, and one writer at a time.

A verb that writes a folder of outputs (bench, search, evolve) records itself in ``.autoprox-run``;
another verb, or ``--resume`` of another verb, refuses the folder with one line. Folders written
before the record existed are recognised by their files. While a run writes its folder it holds an
exclusive lock (``fcntl.flock`` on ``.autoprox-lock``, released by the kernel if the process dies);
a second run on the same folder stops with one line instead of interleaving its files.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from autoprox.core.io import atomic_write_text, read_regular_text

MARK, LOCK = ".autoprox-run", ".autoprox-lock"
SIGNATURES = {"evolve": ("checkpoint.json", "history.jsonl"), "search": ("state.json", "result.yaml"),
              "bench": ("bench.csv",)}  # files that tell whose a folder without a record is


def owner(folder: str | Path) -> str | None:
    """The verb that made ``folder`` (its record, else its files); None for a new or unrelated folder."""
    f = Path(folder)
    try:
        rec = json.loads(read_regular_text(f / MARK, "run record"))  # never a FIFO's wait
        if isinstance(rec, dict) and isinstance(rec.get("verb"), str):
            return rec["verb"]
    except (OSError, ValueError):
        pass
    return next((v for v, names in SIGNATURES.items() if any((f / n).is_file() for n in names)), None)


def check_owner(folder: str | Path, verb: str) -> None:
    """``ValueError`` when ``folder`` holds another verb's run or another run is writing it (checked
    before any work; ``claimed`` takes the lock for real)."""
    made_by = owner(folder)
    if made_by is not None and made_by != verb:
        raise ValueError(f"{folder} holds an autoprox {made_by} run: {verb} will not write there; "
                         f"choose another folder (--out; out=)")
    lock = Path(folder) / LOCK
    if lock.is_file():
        fd = os.open(lock, os.O_RDWR)
        try:
            _take(fd, Path(folder))
        finally:
            os.close(fd)


def _take(fd: int, folder: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ValueError(f"{folder} is being written by another autoprox run; wait for it to end or choose "
                         f"another folder (--out; out=)") from None


@contextmanager
def claimed(folder: str | Path, verb: str) -> Iterator[Path]:
    """``folder`` made (if needed), recorded as ``verb``'s and locked for as long as the block runs.
    A block that fails before any output is in the folder leaves things as they were: the record and
    lock it added are removed, and so are the folders it made."""
    f = Path(folder)
    check_owner(f, verb)
    made = [d for d in (f, *f.parents) if not os.path.lexists(d)]  # what mkdir makes, deepest first
    had = {n for n in (MARK, LOCK) if os.path.lexists(f / n)}
    f.mkdir(parents=True, exist_ok=True)
    fd = None
    try:
        fd = os.open(f / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        _take(fd, f)
        if not (f / MARK).is_file():
            atomic_write_text(f / MARK, json.dumps({"verb": verb}) + "\n")
        yield f
    except BaseException:
        _undo(f, made, had)
        raise
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _undo(f: Path, made: list[Path], had: set[str]) -> None:
    """After a failed block: if ``f`` holds nothing but the run's record and lock, remove those this
    run added (``had``: those it found) and the folders it made (``made``, while empty)."""
    try:
        if any(p.name not in (MARK, LOCK) for p in f.iterdir()):
            return  # an output, or someone else's file: left as it is
        for name in (MARK, LOCK):
            if name not in had:
                (f / name).unlink(missing_ok=True)
        for d in made:
            d.rmdir()
    except OSError:  # a folder someone else filled meanwhile, or one that cannot be read: left
        pass
