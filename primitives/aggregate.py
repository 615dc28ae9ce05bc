"""Layer aggregations: per-layer scalars plus their layer kinds -> one 0-d tensor.

Every aggregation is ``fn(values, kinds)``: ``values`` holds one number per layer
(flattened, so a 0-d tensor is one layer) and ``kinds`` the matching kind strings.
Kind groups: attn = {attn_qkv, attn_proj}; mlp = {mlp_fc1, mlp_fc2}; nonattn = every
kind except the attn kinds and "patch" (so "norm", "attn_map", "head", ... count).

An aggregation's batched form takes many archs' layers at once:
``batched(values, codes, names, groups, n_groups)`` with ``values`` (m,) one number per layer,
``codes`` (m,) indices into the kind strings ``names``, and ``groups`` (m,) the arch of each
layer; it returns the (n_groups,) results of ``fn`` on each arch's layers (an arch without
layers gets ``fn`` of an empty selection).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from primitives.base import register_op
from primitives.reduce import reduce_max, reduce_mean, reduce_min, reduce_sum

ATTN_KINDS = frozenset({"attn_qkv", "attn_proj"})
MLP_KINDS = frozenset({"mlp_fc1", "mlp_fc2"})

Aggregation = Callable[[Tensor, Sequence[str]], Tensor]


def is_attn(kind: str) -> bool:
    """Whether ``kind`` is an attention weight layer."""
    return kind in ATTN_KINDS


def is_mlp(kind: str) -> bool:
    """Whether ``kind`` is an MLP weight layer."""
    return kind in MLP_KINDS


def is_nonattn(kind: str) -> bool:
    """Whether ``kind`` is neither an attention layer nor the patch embedding."""
    return kind not in ATTN_KINDS and kind != "patch"


def select(values: Tensor, kinds: Sequence[str], keep: Callable[[str], bool] | None = None) -> Tensor:
    """The 1-D values whose kind passes ``keep`` (all if None); length mismatch -> ValueError."""
    flat = values.reshape(-1)
    if flat.numel() != len(kinds):
        raise ValueError(f"{flat.numel()} layer values but {len(kinds)} layer kinds")
    if keep is None:
        return flat
    mask = torch.tensor([keep(k) for k in kinds], dtype=torch.bool, device=flat.device)
    return flat[mask]


def _aggregation(reduce: Callable[[Tensor], Tensor], keep: Callable[[str], bool] | None) -> Aggregation:
    def aggregate(values: Tensor, kinds: Sequence[str]) -> Tensor:
        return reduce(select(values, kinds, keep))
    return aggregate


def _group_sums(values: Tensor, groups: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Per-group sums (accumulated in float64) and counts."""
    sums = torch.zeros(n, dtype=torch.float64, device=values.device).index_add_(0, groups, values.double())
    counts = torch.zeros(n, dtype=torch.float64, device=values.device).index_add_(
        0, groups, torch.ones_like(values, dtype=torch.float64))
    return sums, counts


def _group_extreme(values: Tensor, groups: Tensor, n: int, how: str) -> Tensor:
    """Per-group amax/amin; NaN if a group holds a NaN or nothing (as ``reduce_max``/``reduce_min``)."""
    start = -math.inf if how == "amax" else math.inf
    out = torch.full((n,), start, dtype=values.dtype, device=values.device)
    out = out.scatter_reduce(0, groups, torch.where(torch.isnan(values), start, values), how, include_self=True)
    nans, counts = _group_sums(torch.isnan(values).to(values.dtype), groups, n)
    return torch.where((nans > 0) | (counts == 0), torch.full_like(out, math.nan), out)


def _group_reduce(values: Tensor, groups: Tensor, n: int, reducer: str) -> Tensor:
    if reducer in ("max", "min"):
        return _group_extreme(values, groups, n, "amax" if reducer == "max" else "amin")
    sums, counts = _group_sums(values, groups, n)
    if reducer == "sum":
        return sums.to(values.dtype)
    return torch.where(counts == 0, torch.full_like(sums, math.nan), sums / counts).to(values.dtype)


def _batched_aggregation(reducer: str, keep: Callable[[str], bool] | None) -> Callable[..., Tensor]:
    def run(values: Tensor, codes: Tensor, names: Sequence[str], groups: Tensor, n_groups: int) -> Tensor:
        if keep is not None:
            table = torch.tensor([keep(k) for k in names], dtype=torch.bool, device=values.device)
            chosen = table[codes] if len(names) else torch.zeros_like(codes, dtype=torch.bool)
            values, groups = values[chosen], groups[chosen]
        return _group_reduce(values, groups, n_groups, reducer)
    return run


# reducer name -> (reduction, LaTeX operator, result on an empty selection)
_REDUCERS = {
    "sum": (reduce_sum, r"\sum", "0"),
    "mean": (reduce_mean, r"\operatorname{mean}", "NaN"),
    "max": (reduce_max, r"\max", "NaN"),
    "min": (reduce_min, r"\min", "NaN"),
}
# selection suffix -> (kind filter, words for the doc)
_SELECTIONS = {
    "": (None, "all layers"),
    "attn": (is_attn, "attention layers (attn_qkv, attn_proj)"),
    "mlp": (is_mlp, "MLP layers (mlp_fc1, mlp_fc2)"),
    "nonattn": (is_nonattn, "layers that are neither attention nor patch embedding"),
}
_COMBINATIONS = [(r, "") for r in _REDUCERS] + [
    (r, s) for s in ("attn", "mlp", "nonattn") for r in ("sum", "mean")
]


def _escape(latex: str) -> str:
    """Protect literal braces from ``str.format``."""
    return latex.replace("{", "{{").replace("}", "}}")


def _register_all() -> None:
    for reducer, suffix in _COMBINATIONS:
        reduce, operator, empty = _REDUCERS[reducer]
        keep, words = _SELECTIONS[suffix]
        short = f"{reducer}_{suffix}" if suffix else reducer
        subscript = rf"\ell\in\mathrm{{{suffix}}}" if suffix else r"\ell"
        register_op(
            f"agg_{short}", group="aggregate", arity=1, out_kind="scalar",
            text=f"agg_{short}({{0}})",
            latex=_escape(f"{operator}_{{{subscript}}}") + r"\left({0}\right)",
            doc=f"{reducer.capitalize()} of the per-layer values over {words}; empty selection -> {empty}.",
            batched=_batched_aggregation(reducer, keep),
        )(_aggregation(reduce, keep))


_register_all()
