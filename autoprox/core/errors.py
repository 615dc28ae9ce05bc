"""The base of autoprox's own errors: a mistake in the input, a file or the environment that the
command line reports in one line (exit 2) instead of a traceback (``autoprox.cli.main``)."""
from __future__ import annotations


class AutoproxError(Exception):
    """An error autoprox explains in one line: bad input, a changed cache entry, a worker lost."""
