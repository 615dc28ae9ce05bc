"""How an op applies to per-layer values (torch only; embedded in exported proxies).

Unary ops map over layers; binary ops pair layers by position (the shorter list
wins) and broadcast a single value; an aggregation turns per-layer values into one
scalar, a per-layer tensor first reduced to its mean.
"""
from __future__ import annotations

from typing import Callable

import torch


class Layered:
    """Per-layer values with the kind of each layer."""

    def __init__(self, values: list, kinds: list) -> None:
        self.values, self.kinds = values, kinds


def apply_op(fn: Callable, aggregate: bool, vals: list):
    """``fn`` applied to operand values (``Layered`` or single tensors)."""
    if aggregate:
        v = vals[0]
        per = torch.stack([t if t.dim() == 0 else t.float().mean() for t in v.values]) \
            if v.values else torch.zeros(0)
        return fn(per.float(), v.kinds)
    layered = [v for v in vals if isinstance(v, Layered)]
    if not layered:
        return fn(*vals)
    n = min(len(v.values) for v in layered)
    cols = [v.values[:n] if isinstance(v, Layered) else [v] * n for v in vals]
    return Layered([fn(*args) for args in zip(*cols)], layered[0].kinds[:n])


def leaf_value(name: str, tensors: dict, kinds: dict, scalars: dict, single: tuple):
    """A statistic as an operand: scalars and ``single`` families as tensors, others layered."""
    if name in scalars:
        return torch.tensor(float(scalars[name]))
    if name not in tensors:
        raise KeyError(f"statistic {name!r} not available; have {sorted(tensors)}")
    if name in single:
        return tensors[name][0]
    return Layered(list(tensors[name]), list(kinds[name]))
