"""Freed tensor memory goes back to the operating system, without a page fault per tensor.

glibc serves allocations below its mmap threshold from the heap, and raises that threshold (up
to 32 MiB) each time a large block is freed, so after the first arch a statistics pass's
activations come from a heap that is rarely trimmed: a process's resident memory then holds a
chunk's worth of freed activations on top of its live data (about 1 GiB on an AutoFormer-Base
arch). A fixed threshold stops the climb: a block of 4 MiB or more gets its own mapping, unmapped
when it is freed, and smaller blocks (a layer's weight gradient, a chunk's statistics) reuse the
heap. A lower threshold returns a little more at the peak but maps and faults in every mid-sized
tensor afresh, which costs system time of the order of the pass's own arithmetic. After each arch
``trim_freed_memory`` gives the heap's free pages back. Both are for autoprox's own processes (the
CLI and its Ray workers): a process that imports autoprox keeps glibc's defaults, where a trim would
only make the next arch fault its heap in again. Nothing is set at import.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

MMAP_THRESHOLD = 4 * 1024 * 1024
ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}  # the same, for processes started by Ray
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
_threshold_fixed = False  # set by return_freed_memory; a Ray worker starts with ENV instead


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (the only one with ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both exist, or this is not glibc)
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; False where the C library is not glibc."""
    global _threshold_fixed
    libc = _glibc()
    _threshold_fixed = libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _threshold_fixed


def trim_freed_memory() -> bool:
    """Give the heap's free pages back to the system (``malloc_trim``) in a process whose threshold
    ``return_freed_memory`` fixed or that started with ``ENV`` (a Ray worker); whether any went back."""
    ours = _threshold_fixed or all(os.environ.get(k) == v for k, v in ENV.items())
    libc = _glibc()
    return ours and libc is not None and bool(libc.malloc_trim(0))
