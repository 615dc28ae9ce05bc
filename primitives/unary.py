"""Unary ops. ``UNARY_ORDER`` is the Auto-Prox index order used by published genotypes.

Elementwise ops (out_kind "tensor") keep the input's shape; empty in -> empty out.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from primitives._tensor import finite_rows, nan, square_matrix, stack_matrix, stack_rows
from primitives.base import ELEMENTWISE, register_op
from primitives.reduce import l2_norm, reduce_mean, reduce_std, stacked_l2, stacked_mean, stacked_std

UNARY_ORDER = (
    "log", "abslog", "abs", "square", "exp", "standardize", "relu", "invert",
    "frobenius_norm", "normalized_sum", "l1_norm", "softmax", "sigmoid", "logsoftmax",
    "sqrt", "negate", "min_max_normalize", "to_mean_scalar", "to_std_scalar", "no_op",
)


def _unary(name: str, text: str, latex: str, out_kind: str = "tensor", **kw: object) -> Callable:
    return register_op(name, group="unary", arity=1, out_kind=out_kind, text=text, latex=latex, **kw)


@_unary("log", "log({0})", r"\log\left({0}\right)", batched=ELEMENTWISE)
def log(x: Tensor) -> Tensor:
    """Natural log elementwise; log(0) = -inf, log(negative) = NaN."""
    return torch.log(x)


@_unary("abslog", "log|{0}|", r"\log\left|{0}\right|", batched=ELEMENTWISE)
def abslog(x: Tensor) -> Tensor:
    """log|x| elementwise; zeros map to 0 (treated as 1, the Auto-Prox convention)."""
    return torch.log(torch.where(x == 0, torch.ones_like(x), x.abs()))


@_unary("abs", "|{0}|", r"\left|{0}\right|", batched=ELEMENTWISE)
def absolute(x: Tensor) -> Tensor:
    """|x| elementwise."""
    return x.abs()


@_unary("square", "({0})^2", r"\left({0}\right)^{{2}}", batched=ELEMENTWISE)
def square(x: Tensor) -> Tensor:
    """x^2 elementwise (published name element_wise_pow)."""
    return x * x


@_unary("exp", "exp({0})", r"\exp\left({0}\right)", batched=ELEMENTWISE)
def exp(x: Tensor) -> Tensor:
    """e^x elementwise; overflow -> inf."""
    return torch.exp(x)


def _stacked_standardize(x: Tensor) -> Tensor:
    r = stack_rows(x)
    if r.shape[1] < 2:
        return torch.zeros_like(x)
    constant = (r.amax(dim=1) == r.amin(dim=1))[:, None]
    mean = r.mean(dim=1, keepdim=True)
    std = stacked_std(r, mean)[:, None]
    return torch.where(constant, torch.zeros_like(r), (r - mean) / std).reshape(x.shape)


@_unary("standardize", "standardize({0})", r"\operatorname{{standardize}}\left({0}\right)",
        batched=_stacked_standardize)
def standardize(x: Tensor) -> Tensor:
    """(x - mean) / unbiased std over all elements; constant or fewer than 2 elements -> zeros."""
    if x.numel() < 2:
        return torch.zeros_like(x)
    constant = x.amax() == x.amin()
    return torch.where(constant, torch.zeros_like(x), (x - x.mean()) / x.std())


@_unary("relu", "relu({0})", r"\operatorname{{ReLU}}\left({0}\right)", batched=ELEMENTWISE)
def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise."""
    return torch.relu(x)


@_unary("invert", "1/({0})", r"\left({0}\right)^{{-1}}", batched=ELEMENTWISE)
def invert(x: Tensor) -> Tensor:
    """1/x elementwise; 1/0 is defined as 0."""
    return torch.where(x == 0, torch.zeros_like(x), torch.reciprocal(x))


_unary("frobenius_norm", "||{0}||_F", r"\left\|{0}\right\|_{{F}}", out_kind="scalar", batched=stacked_l2,
       doc="Frobenius (Euclidean) norm of all elements, 0-d; empty -> NaN.")(l2_norm)
_unary("normalized_sum", "sum({0})/n", r"\frac{{1}}{{n}}\sum\left({0}\right)", out_kind="scalar",
       batched=stacked_mean, doc="sum(x) / numel(x), i.e. the mean, 0-d; empty -> NaN.")(reduce_mean)


@_unary("l1_norm", "||{0}||_1/n", r"\frac{{1}}{{n}}\left\|{0}\right\|_{{1}}", out_kind="scalar",
        batched=lambda x: stacked_mean(x.abs()))
def l1_norm(x: Tensor) -> Tensor:
    """sum|x| / numel(x) (size-normalised, as in Auto-Prox), 0-d; empty -> NaN."""
    return reduce_mean(x.abs())


@_unary("softmax", "softmax({0})", r"\operatorname{{softmax}}\left({0}\right)",
        batched=lambda x: torch.softmax(stack_rows(x), dim=1).reshape(x.shape))
def softmax(x: Tensor) -> Tensor:
    """Softmax over the flattened tensor (all elements sum to 1), reshaped back."""
    return torch.softmax(x.reshape(-1), dim=0).reshape(x.shape)


@_unary("sigmoid", "sigmoid({0})", r"\sigma\left({0}\right)", batched=ELEMENTWISE)
def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x) elementwise (torch.sigmoid, stable)."""
    return torch.sigmoid(x)


@_unary("logsoftmax", "logsoftmax({0})", r"\log\operatorname{{softmax}}\left({0}\right)",
        batched=lambda x: torch.log_softmax(stack_rows(x), dim=1).reshape(x.shape))
def logsoftmax(x: Tensor) -> Tensor:
    """Log-softmax over the flattened tensor (torch.log_softmax, stable), reshaped back."""
    return torch.log_softmax(x.reshape(-1), dim=0).reshape(x.shape)


@_unary("sqrt", "sqrt({0})", r"\sqrt{{\max\left({0}, 0\right)}}", batched=ELEMENTWISE)
def sqrt(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) elementwise: negatives -> 0 (published name element_wise_sqrt)."""
    return torch.sqrt(torch.clamp(x, min=0))


@_unary("negate", "-({0})", r"-\left({0}\right)", batched=ELEMENTWISE)
def negate(x: Tensor) -> Tensor:
    """-x elementwise (published name element_wise_revert)."""
    return torch.neg(x)


def _stacked_min_max(x: Tensor) -> Tensor:
    r = stack_rows(x)
    lo, hi = r.amin(dim=1, keepdim=True), r.amax(dim=1, keepdim=True)
    return torch.where(hi == lo, torch.zeros_like(r), (r - lo) / (hi - lo)).reshape(x.shape)


@_unary("min_max_normalize", "minmax({0})", r"\operatorname{{minmax}}\left({0}\right)", batched=_stacked_min_max)
def min_max_normalize(x: Tensor) -> Tensor:
    """(x - min) / (max - min) over all elements; constant -> zeros."""
    if x.numel() == 0:
        return x.clone()
    lo, hi = x.amin(), x.amax()
    return torch.where(hi == lo, torch.zeros_like(x), (x - lo) / (hi - lo))


_unary("to_mean_scalar", "mean({0})", r"\operatorname{{mean}}\left({0}\right)", out_kind="scalar",
       batched=stacked_mean, doc="Mean of all elements, 0-d; empty -> NaN.")(reduce_mean)
_unary("to_std_scalar", "std({0})", r"\operatorname{{std}}\left({0}\right)", out_kind="scalar",
       batched=stacked_std, doc="Unbiased std of all elements, 0-d; one element -> 0, empty -> NaN.")(reduce_std)


@_unary("no_op", "{0}", "{0}", weight=2.0, batched=ELEMENTWISE)
def no_op(x: Tensor) -> Tensor:
    """Identity: returns the input unchanged."""
    return x


JACOV_K = 1e-5  # jacob_cov's eigenvalue offset k (Mellor et al. 2021)


# weight 0: evolution never samples it, so adding it left every evolution run's random draws unchanged
@_unary("add_k", "{0} + 1e-5", r"\left({0}\right) + 10^{{-5}}", weight=0.0, batched=ELEMENTWISE)
def add_k(x: Tensor) -> Tensor:
    """x + 1e-5 elementwise (the offset k that jacob_cov adds to its eigenvalues); not sampled by evolution."""
    return x + JACOV_K


def _stacked_eigvalsh(x: Tensor) -> Tensor | None:
    m = stack_matrix(x)
    if m.shape[1] != m.shape[2]:
        return torch.full((m.shape[0], 1), math.nan, dtype=m.dtype, device=m.device)
    if not bool(finite_rows(m).all()):
        return None  # [NaN] for some operands, n eigenvalues for the others: not one shape
    try:
        return torch.linalg.eigvalsh((m + m.mT) / 2)
    except torch.linalg.LinAlgError:
        return None


@_unary("eigvalsh", "eigvalsh({0})", r"\lambda\left({0}\right)", out_kind="vector", batched=_stacked_eigvalsh)
def eigvalsh(x: Tensor) -> Tensor:
    """Ascending eigenvalues of the symmetrised 2-D view; non-square, empty or non-finite -> [NaN]."""
    m = square_matrix(x)
    if m is not None:
        try:
            return torch.linalg.eigvalsh((m + m.mT) / 2)
        except torch.linalg.LinAlgError:
            pass
    return nan(x).reshape(1)
