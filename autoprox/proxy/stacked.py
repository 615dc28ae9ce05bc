"""Expression values over many archs at once: the batched evaluator's data and op application.

A ``Value`` holds one sub-expression's values on every arch of a chunk. Its operands (one per
arch and layer, or one per arch for a single value) are kept in ``Stack``s: each stacks the
operands of one shape, so an op runs once per stack (its ``batched`` form, ``primitives.base``),
not once per layer and arch. The rules are those of ``evalcore.apply_op``, which stays the
reference: binary ops pair layers by position (the shorter list wins) and broadcast a single
value; an aggregation reduces each layer to its mean first. An op that fails on an operand
marks that arch ``bad`` (its score is NaN), as the reference's error does for that arch.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

import primitives
from autoprox.proxy.graph import SCORE_ERRORS
from primitives._tensor import stack_rows


@dataclass
class Stack:
    """Operands of one shape: ``data`` (n, *shape) with each operand's arch, layer and kind code."""

    data: Tensor
    arch: Tensor   # (n,) int64, index of the arch in the chunk
    layer: Tensor  # (n,) int64, position in the arch's layer list (0 for a single value)
    kind: Tensor   # (n,) int64, index into the chunk's kind names (-1 for a single value)


@dataclass
class Value:
    """One expression's values on every arch of a chunk."""

    stacks: list[Stack]
    layered: bool
    bad: Tensor  # (archs,) bool: an op failed on this arch

    @property
    def nbytes(self) -> int:
        return sum(s.data.numel() * s.data.element_size() for s in self.stacks)


def make_value(groups: Sequence[tuple[Tensor, Sequence[tuple[int, int, int]]]], layered: bool, n_archs: int,
               device: str | torch.device = "cpu") -> Value:
    """A ``Value`` from stacks of operands, each with the (arch, layer, kind code) of its rows."""
    stacks = []
    for data, meta in groups:
        m = torch.tensor(list(meta), dtype=torch.int64).reshape(len(meta), 3).to(device)
        stacks.append(Stack(data.to(device), m[:, 0], m[:, 1], m[:, 2]))
    return Value(stacks, layered, torch.zeros(n_archs, dtype=torch.bool, device=device))


def _one_at_a_time(fn, args: Sequence[Tensor], arch: Tensor, bad: Tensor) -> list[tuple[Tensor, Tensor]]:
    """``fn`` on each operand (tuple) in turn, results stacked by shape: [(data, rows)]."""
    out: dict[tuple, list] = defaultdict(list)
    for i in range(args[0].shape[0]):
        try:
            r = fn(*(a[i] for a in args))
        except SCORE_ERRORS:
            r = torch.tensor(math.nan, device=args[0].device)
            bad[arch[i]] = True
        out[tuple(r.shape)].append((i, r))
    return [(torch.stack([r for _, r in rs]), torch.tensor([i for i, _ in rs], device=args[0].device))
            for rs in out.values()]


def _run(op: primitives.Op, args: Sequence[Tensor], arch: Tensor, bad: Tensor) -> list[tuple[Tensor, Tensor | None]]:
    """``op`` over stacked operands: [(results, rows they belong to, None for all)]."""
    if all(math.prod(a.shape[1:]) > 0 for a in args):
        try:
            out = op.batched(*args)
        except SCORE_ERRORS:
            out = None
        if out is not None:
            return [(out, None)]
    return _one_at_a_time(op.fn, args, arch, bad)


def _rebuild(results: list[tuple[Tensor, Tensor | None]], lead: Stack, rows_of_lead: Tensor | None) -> list[Stack]:
    out = []
    for data, sel in results:
        idx = rows_of_lead if sel is None else (sel if rows_of_lead is None else rows_of_lead[sel])
        if idx is None:
            out.append(Stack(data, lead.arch, lead.layer, lead.kind))
        else:
            out.append(Stack(data, lead.arch[idx], lead.layer[idx], lead.kind[idx]))
    return out


def unary(op: primitives.Op, v: Value) -> Value:
    bad = v.bad.clone()
    stacks = [st for s in v.stacks for st in _rebuild(_run(op, [s.data], s.arch, bad), s, None)]
    return Value(stacks, v.layered, bad)


def _table(v: Value, n_archs: int) -> tuple[Tensor, Tensor]:
    """(archs, layers) tables: which stack holds each (arch, layer) operand, and its row (-1: none)."""
    depth = max((int(s.layer.max()) + 1 for s in v.stacks if s.layer.numel()), default=1)
    dev = v.bad.device
    part = torch.full((n_archs, depth), -1, dtype=torch.int64, device=dev)
    row = torch.full((n_archs, depth), -1, dtype=torch.int64, device=dev)
    for p, s in enumerate(v.stacks):
        part[s.arch, s.layer] = p
        row[s.arch, s.layer] = torch.arange(s.arch.numel(), device=dev)
    return part, row


def _gather(data: Tensor, idx: Tensor) -> Tensor:
    """``data[idx]``: a view (no copy) when ``idx`` is an ascending run of consecutive rows."""
    n = idx.numel()
    if n:
        start = int(idx[0])
        if int(idx[-1]) - start == n - 1 and (n == 1 or bool((idx[1:] - idx[:-1] == 1).all())):
            return data[start:start + n]
    return data[idx]


def binary(op: primitives.Op, x: Value, y: Value) -> Value:
    """``op(x, y)``: layers paired by position, a single value broadcast over the other's layers."""
    n_archs = x.bad.numel()
    bad = x.bad | y.bad
    lead, other, lead_first = (x, y, True) if x.layered or not y.layered else (y, x, False)
    part, row = _table(other, n_archs)
    stacks: list[Stack] = []
    for s in lead.stacks:
        layer = s.layer if other.layered else torch.zeros_like(s.layer)
        inside = layer < part.shape[1]
        q = torch.where(inside, part[s.arch, layer.clamp(max=part.shape[1] - 1)], -1)
        r = row[s.arch, layer.clamp(max=part.shape[1] - 1)]
        for p in torch.unique(q[q >= 0]).tolist():
            sel = torch.nonzero(q == p).reshape(-1)
            a, b = _gather(s.data, sel), _gather(other.stacks[p].data, r[sel])
            args = (a, b) if lead_first else (b, a)
            stacks += _rebuild(_run(op, args, s.arch[sel], bad), s, sel)
    return Value(stacks, x.layered or y.layered, bad)


def layer_means(v: Value) -> tuple[Tensor, Tensor, Tensor]:
    """(values, kind codes, archs) of every layer: a 0-d operand itself, others their float mean."""
    if not v.stacks:
        empty = torch.zeros(0, dtype=torch.int64, device=v.bad.device)
        return torch.zeros(0, device=v.bad.device), empty, empty
    vals = [s.data if s.data.dim() == 1 else stack_rows(s.data.float()).mean(dim=1) for s in v.stacks]
    return (torch.cat(vals).float(), torch.cat([s.kind for s in v.stacks]), torch.cat([s.arch for s in v.stacks]))


def aggregate(op: primitives.Op, v: Value, kind_names: Sequence[str]) -> Value:
    """One number per arch from its layers (``op``'s batched form over every arch at once)."""
    n = v.bad.numel()
    values, codes, archs = layer_means(v)
    out = op.batched(values, codes, kind_names, archs, n)
    idx = torch.arange(n, device=v.bad.device)
    return Value([Stack(out, idx, torch.zeros_like(idx), torch.full_like(idx, -1))], False, v.bad.clone())


def scores(v: Value) -> Tensor:
    """(archs,) float64 scores: the mean of each arch's single value; NaN where bad or missing."""
    out = torch.full((v.bad.numel(),), math.nan, dtype=torch.float64, device=v.bad.device)
    for s in v.stacks:
        out[s.arch] = stack_rows(s.data.float()).mean(dim=1).double() if s.data.dim() > 1 else s.data.float().double()
    return torch.where(v.bad, torch.full_like(out, math.nan), out)


def apply(op: primitives.Op, args: Sequence[Value], kind_names: Sequence[str]) -> Value:
    """``op`` on argument values, as ``evalcore.apply_op`` on each arch."""
    if op.group == "aggregate":
        return aggregate(op, args[0], kind_names)
    if len(args) == 1:
        return unary(op, args[0])
    return binary(op, args[0], args[1])
