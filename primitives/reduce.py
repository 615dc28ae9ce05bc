"""Reductions: tensor -> 0-d tensor. Empty input gives NaN, except ``sum`` (0) and ``numel`` (0)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from primitives._tensor import finite_matrix, finite_rows, float_dtype, nan, nan_where, stack_rows
from primitives._tensor import nuclear, square_matrix, stack_matrix
from primitives.base import register_op


def _reduce(name: str, text: str, latex: str, weight: float = 1.0, batched: Callable | None = None) -> Callable:
    return register_op(name, group="reduce", arity=1, out_kind="scalar", text=text, latex=latex, weight=weight,
                       batched=batched)


# Over stacks (n, *shape) of non-empty operands: one result per operand.
def stacked_mean(x: Tensor) -> Tensor:
    return stack_rows(x).mean(dim=1)


def stacked_std(x: Tensor, mean: Tensor | None = None) -> Tensor:
    """Unbiased std of each operand (two passes: faster than ``Tensor.std`` on a CPU, as exact)."""
    r = stack_rows(x)
    if r.shape[1] == 1:
        return torch.zeros(r.shape[0], dtype=float_dtype(x), device=x.device)
    d = r - (r.mean(dim=1, keepdim=True) if mean is None else mean)
    return ((d * d).sum(dim=1) / (r.shape[1] - 1)).sqrt()


def stacked_l2(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(stack_rows(x), dim=1)


def _stacked_nuclear(x: Tensor) -> Tensor | None:
    m = stack_matrix(x)
    ok = finite_rows(m)
    try:
        return nan_where(~ok, nuclear(torch.where(ok[:, None, None], m, 0)))
    except torch.linalg.LinAlgError:
        return None


def _stacked_logdet(x: Tensor) -> Tensor:
    m = stack_matrix(x)
    if m.shape[1] != m.shape[2]:
        return torch.full((m.shape[0],), math.nan, dtype=float_dtype(x), device=x.device)
    ok = finite_rows(m)
    return nan_where(~ok, torch.linalg.slogdet(torch.where(ok[:, None, None], m, 0)).logabsdet)


def _stacked_numel(x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), float(math.prod(x.shape[1:])), dtype=float_dtype(x), device=x.device)


@_reduce("mean", "mean({0})", r"\operatorname{{mean}}\left({0}\right)", batched=stacked_mean)
def reduce_mean(x: Tensor) -> Tensor:
    """Mean of all elements; empty -> NaN."""
    return x.mean() if x.numel() else nan(x)


@_reduce("sum", "sum({0})", r"\sum\left({0}\right)", batched=lambda x: stack_rows(x).sum(dim=1))
def reduce_sum(x: Tensor) -> Tensor:
    """Sum of all elements; empty -> 0."""
    return x.sum()


@_reduce("std", "std({0})", r"\operatorname{{std}}\left({0}\right)", batched=stacked_std)
def reduce_std(x: Tensor) -> Tensor:
    """Unbiased standard deviation of all elements; one element -> 0, empty -> NaN."""
    if x.numel() == 0:
        return nan(x)
    return x.std() if x.numel() > 1 else torch.zeros((), dtype=float_dtype(x), device=x.device)


@_reduce("max", "max({0})", r"\max\left({0}\right)", batched=lambda x: stack_rows(x).amax(dim=1))
def reduce_max(x: Tensor) -> Tensor:
    """Largest element (NaN if any element is NaN); empty -> NaN."""
    return x.amax() if x.numel() else nan(x)


@_reduce("min", "min({0})", r"\min\left({0}\right)", batched=lambda x: stack_rows(x).amin(dim=1))
def reduce_min(x: Tensor) -> Tensor:
    """Smallest element (NaN if any element is NaN); empty -> NaN."""
    return x.amin() if x.numel() else nan(x)


@_reduce("l2_norm", "l2_norm({0})", r"\left\|{0}\right\|_{{2}}", batched=stacked_l2)
def l2_norm(x: Tensor) -> Tensor:
    """Euclidean norm of all elements (= Frobenius norm); empty -> NaN."""
    return torch.linalg.vector_norm(x) if x.numel() else nan(x)


@_reduce("nuclear_norm", "nuclear_norm({0})", r"\left\|{0}\right\|_{{*}}", weight=0.2,  # an SVD: rarely sampled
         batched=_stacked_nuclear)
def nuclear_norm(x: Tensor) -> Tensor:
    """Sum of singular values of the 2-D view (first dim x rest); empty or non-finite -> NaN."""
    m = finite_matrix(x)
    if m is None:
        return nan(x)
    try:
        return nuclear(m)
    except torch.linalg.LinAlgError:
        return nan(x)


@_reduce("logdet", "logdet({0})", r"\log\left|\det\left({0}\right)\right|",
         batched=_stacked_logdet)
def logdet(x: Tensor) -> Tensor:
    """log|det| of the 2-D view via slogdet (singular -> -inf); non-square, empty or non-finite -> NaN."""
    m = square_matrix(x)
    return nan(x) if m is None else torch.linalg.slogdet(m).logabsdet


@_reduce("numel", "numel({0})", r"\operatorname{{numel}}\left({0}\right)",
         batched=_stacked_numel)
def numel(x: Tensor) -> Tensor:
    """Number of elements as a float 0-d tensor; empty -> 0, 0-d -> 1."""
    return torch.tensor(float(x.numel()), dtype=float_dtype(x), device=x.device)
