"""The batched evaluator: a population of expressions scored over a shard of archs with few ops.

The shard's archs are cut into chunks; each statistic family a population reads is packed per
chunk into a ``stacked.Value`` (operands of one shape stacked, on the scoring device) and kept
while it fits ``resident_bytes`` (first come; the others are packed again from the
cache files at each call: the same values, streamed). Every node of the population
runs once per chunk (shared sub-expressions once, released after their last use as
``graph.SharedMemo`` does). ``graph.score_population`` stays the reference: the same scores to
float rounding, NaN where it gives NaN (``tests/test_population_eval.py``).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

import primitives
from autoprox.proxy import stacked
from autoprox.proxy.graph import DATA_FREE, Expr, SharedMemo, leaves, parse
from autoprox.stats.base import SCALARS, ArchStats
from autoprox.stats.cache import LazyList, decode_stack
from autoprox.stats.passes import single_families

CHUNK_BYTES = 16 << 20  # float32 bytes of one family per chunk: intermediates stay near the CPU caches
CPU_RESIDENT_BYTES = 1 << 30


def _shapes(values) -> list[tuple]:
    """Shapes of a family's per-layer tensors without decoding them."""
    shapes = getattr(values, "shapes", None)
    return shapes() if shapes is not None else [tuple(t.shape) for t in values]


def family_bytes(stats: ArchStats, family: str) -> int:
    """float32 bytes of ``family`` on one arch (0 for scalars and missing families)."""
    if family not in stats.tensors:
        return 0
    return 4 * sum(math.prod(s) for s in _shapes(stats.tensors[family]))


def _operands(s: ArchStats, name: str, kinds: dict[str, int]) -> tuple[bool, list]:
    """(layered, [(source, layer, kind code)]) of one arch; a source is a tensor or a stored
    (array, scale, shape) decoded later in bulk."""
    if name in s.scalars:
        return False, [(torch.tensor(float(s.scalars[name])), 0, -1)]
    if name in SCALARS:
        raise KeyError(f"scalar {name!r} not in statistics")
    if name not in s.tensors:
        raise KeyError(f"statistic {name!r} not available; have {sorted(s.tensors)}")
    values = s.tensors[name]
    if name in single_families():
        return False, [(values[0], 0, -1)]
    codes = [kinds.setdefault(k, len(kinds)) for k in s.kinds[name]]
    stored = values.encoded() if isinstance(values, LazyList) else values
    return True, [(t, i, k) for i, (t, k) in enumerate(zip(stored, codes))]


def _stack(sources: list) -> torch.Tensor:
    if all(isinstance(x, tuple) for x in sources):
        return decode_stack(sources)
    return torch.stack([x if isinstance(x, torch.Tensor) else decode_stack([x])[0] for x in sources])


def pack(stats: Sequence[ArchStats], name: str, kinds: dict[str, int], device: str) -> stacked.Value:
    """Leaf ``name`` on every arch of ``stats`` as one ``Value`` (``evalcore.leaf_value``'s rules)."""
    groups: dict[tuple, list] = defaultdict(list)
    layered = None
    for a, s in enumerate(stats):
        here, ops = _operands(s, name, kinds)
        if layered is not None and here != layered:
            raise ValueError(f"statistic {name!r} is per layer on some archs and single on others")
        layered = here
        for src, i, k in ops:
            groups[tuple(src[2]) if isinstance(src, tuple) else tuple(src.shape)].append((src, (a, i, k)))
    return stacked.make_value([(_stack([x for x, _ in g]), [m for _, m in g]) for g in groups.values()],
                              bool(layered), len(stats), device)


class Chunk:
    """Some archs' statistics as packed leaves."""

    def __init__(self, stats: Sequence[ArchStats], device: str, kinds: dict[str, int]) -> None:
        self.stats, self.device = stats, device
        self.kinds = kinds  # layer kind -> code, shared by a scorer's chunks (append-only)
        self.leaves: dict[str, stacked.Value] = {}

    def leaf(self, name: str) -> stacked.Value:
        if name not in self.leaves:
            self.leaves[name] = pack(self.stats, name, self.kinds, self.device)
        return self.leaves[name]

    def evaluate(self, exprs: Sequence[Expr]) -> torch.Tensor:
        """(archs x exprs) float64 scores."""
        memo = SharedMemo(exprs)
        cols = []
        for e in exprs:
            cols.append(stacked.scores(self._value(e, memo)))
            memo.release([str(e)])
        return torch.stack(cols, dim=1) if cols else torch.zeros(len(self.stats), 0, dtype=torch.float64)

    def _value(self, e: Expr, memo: SharedMemo) -> stacked.Value:
        key = str(e)
        if key not in memo:
            if e.is_leaf:
                memo[key] = self.leaf(e.head)
            else:
                args = [self._value(a, memo) for a in e.args]
                memo[key] = stacked.apply(primitives.get_op(e.head), args, tuple(self.kinds))  # in code order
                memo.release(str(a) for a in e.args)
        return memo[key]


class PopulationScorer:
    """Scores populations of expressions on a fixed list of archs' statistics, chunk by chunk."""

    def __init__(self, held: Sequence[ArchStats], device: str = "cpu", chunk_bytes: int = CHUNK_BYTES,
                 resident_bytes: int | None = None, share: float = 1.0) -> None:
        self.held, self.device, self.chunk_bytes = list(held), device, chunk_bytes
        self.resident_bytes = default_resident_bytes(device, share) if resident_bytes is None else resident_bytes
        self._resident: dict[tuple, stacked.Value] = {}  # (family, start, stop) -> its pack
        self.resident_nbytes = 0
        self._kinds: dict[str, int] = {}
        self._chunks: dict[int, list[tuple[int, int]]] = {}

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """[start, stop) ranges over the first ``n`` archs, each within ``chunk_bytes`` of any held
        family: the same ranges whatever a population reads, so packs stay valid across calls."""
        if n not in self._chunks:
            self._chunks[n] = self._cut(n)
        return self._chunks[n]

    def _cut(self, n: int) -> list[tuple[int, int]]:
        out, start, size = [], 0, 0
        for i in range(n):
            s = self.held[i]
            b = max((family_bytes(s, f) for f in s.tensors), default=0)
            if i > start and size + b > self.chunk_bytes:
                out.append((start, i))
                start, size = i, 0
            size += b
        if n > start:
            out.append((start, n))
        return out

    def score(self, exprs: Sequence[str | Expr], first: int | None = None) -> np.ndarray:
        """(archs x exprs) scores on the held archs (only the ``first`` few: a probe)."""
        es = [parse(e) if isinstance(e, str) else e for e in exprs]
        n = len(self.held) if first is None else min(first, len(self.held))
        families = sorted(set().union(*(leaves(e) for e in es)) - DATA_FREE) if es else []
        out = np.full((n, len(es)), math.nan)
        for start, stop in self.chunks(n):
            chunk = Chunk(self.held[start:stop], self.device, self._kinds)
            chunk.leaves.update((f, v) for f in families if (v := self._resident.get((f, start, stop))) is not None)
            out[start:stop] = chunk.evaluate(es).cpu().numpy()
            for f in families:
                self._keep(chunk, f, start, stop)
        return out

    def _keep(self, chunk: Chunk, family: str, start: int, stop: int) -> None:
        """Keep a packed family resident if it fits the budget. Nothing is evicted: every call scans
        all chunks in order, and under a scan least-recently-used eviction keeps nothing useful."""
        value = chunk.leaves.get(family)
        if value is None or (family, start, stop) in self._resident:
            return
        if self.resident_nbytes + value.nbytes <= self.resident_bytes:
            self._resident[(family, start, stop)] = value
            self.resident_nbytes += value.nbytes


def scoring_device(device: str) -> str:
    """Where a worker scores: ``device``, or the CPU when it names CUDA on a machine without it
    (statistics computed on a GPU and cached serve any machine)."""
    return "cpu" if torch.device(device).type == "cuda" and not torch.cuda.is_available() else device


def default_resident_bytes(device: str, share: float = 1.0) -> int:
    """1 GiB on CPU; on a CUDA device, half its memory times the ``share`` of it a worker holds
    (``scoring.gpus_per_worker``: four workers at 0.25 keep an eighth each)."""
    if torch.device(device).type == "cuda":
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return int(total * 0.5 * min(1.0, share))
    return CPU_RESIDENT_BYTES
