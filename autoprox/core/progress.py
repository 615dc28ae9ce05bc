"""The one progress display: a rich bar with an ETA on a terminal; plain one-line reports
every ``every`` seconds (and at the end) when output goes to a file, e.g. an overnight log. The
reports come from a timer, so a phase blocked in one long step (a Ray shard, one big arch) still
says it is alive.

    with Progress("statistics autoformer", total=100) as prog:
        for arch in archs:
            ...
            prog.advance(note="best 0.61")
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import IO, Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of one phase of ``total`` units (``None``: unknown yet). While a phase runs inside
    another (the statistics inside ``evolve``), only the inner one's timer reports."""

    _open: list["Progress"] = []  # the phases open in this process, outermost first

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None,
                 every: float = 30.0, tty: bool | None = None) -> None:
        self.label, self.total, self.every = label, total, every
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done, self.note, self.touched = 0, "", False
        self.start = self._last = time.monotonic()
        self._seen: deque[tuple[float, int]] = deque([(self.start, 0)])  # (time, done) at each update
        self._bar: Any = None
        self._lock = threading.Lock()
        self._printed: tuple | None = None  # (done, total, note) of the last line printed
        self._stop = threading.Event()
        if not self.tty:
            Progress._open.append(self)
            threading.Thread(target=self._beat, daemon=True).start()
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[note]}"), transient=True,
                            console=Console(file=self.stream))
            self._task = self._bar.add_task(label, total=total, note="")
            self._bar.start()

    def _eta(self, now: float) -> float | None:
        """Seconds to go at the pace of the later half of the elapsed time (a burst at the start,
        cached archs read in a second, does not promise the rest at that pace), measured up to the
        last update and counted down since: between chunks of work it falls steadily instead of
        climbing until the next chunk lands. None when nothing moved in that half, or overdue."""
        cut = now - (now - self.start) / 2
        while len(self._seen) > 1 and self._seen[1][0] <= cut:
            self._seen.popleft()
        (t0, d0), (t1, d1) = self._seen[0], self._seen[-1]
        if d1 <= d0 or t1 <= t0:
            return None
        left = (self.total or 0) - d1
        eta = left * (t1 - t0) / (d1 - d0) - (now - t1)
        return eta if eta > 0 else None

    def line(self) -> str:
        """The one-line report: label, count, elapsed time, ETA and note."""
        now = time.monotonic()
        el = now - self.start
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and 0 < self.done < self.total:
            left = self._eta(now)
            eta = f" eta {_clock(left)}" if left is not None else " eta ?"
        return f"{self.label}: {self.done}{of} in {_clock(el)}{eta}" + (f"  {self.note}" if self.note else "")

    def update(self, done: int, total: int | None = None, note: str | None = None) -> None:
        self.done, self.touched = done, True
        if self._bar is None:  # the plain lines' ETA (the bar estimates its own)
            self._seen.append((time.monotonic(), done))
        self.total = self.total if total is None else total
        self.note = self.note if note is None else note
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, note=self.note)
        elif time.monotonic() - self._last >= self.every:
            self._report()

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.update(self.done + n, note=note)

    def _report(self) -> None:
        with self._lock:
            self._last = time.monotonic()
            self._printed = (self.done, self.total, self.note)
            print(self.line(), file=self.stream, flush=True)

    def _beat(self) -> None:
        """The timer: a line whenever ``every`` seconds passed without one."""
        while not self._stop.wait(min(self.every, 5.0)):
            covered = bool(Progress._open) and Progress._open[-1] is not self  # an inner phase reports
            if not covered and time.monotonic() - self._last >= self.every:
                self._report()

    def close(self, failed: bool = False) -> None:
        """Stop the bar, or print the final line: not after an error (the error is the one line),
        nor for a phase that never reported (``evolve --cv --resume`` gathering finished runs), nor
        when the last line printed already says it."""
        self._stop.set()
        if self in Progress._open:
            Progress._open.remove(self)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not failed and self.touched and self._printed != (self.done, self.total, self.note):
            self._report()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=isinstance(exc_type, type) and issubclass(exc_type, Exception))


def track(items: Iterable[T], label: str, total: int | None = None, **kw: Any) -> Iterator[T]:
    """``items``, advancing a ``Progress`` after each."""
    with Progress(label, total, **kw) as prog:
        for x in items:
            yield x
            prog.advance()
