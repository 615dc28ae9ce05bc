"""Freed tensor memory goes back to the operating system at once.

glibc serves allocations below its mmap threshold from the heap, and raises that threshold (up
to 32 MiB) each time a large block is freed, so after the first arch a statistics pass's
activations come from a heap that is rarely trimmed: a process's resident memory then holds a
chunk's worth of freed activations on top of its live data (about 1 GiB on an AutoFormer-Base
arch). A fixed 128 KiB threshold gives every tensor of that size its own mapping, unmapped when
it is freed. Set for autoprox's own processes (the CLI and its Ray workers), never at import.
"""
from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD = 128 * 1024
ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}  # the same, for processes started by Ray
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False
