"""Binary ops. ``BINARY_ORDER`` is the Auto-Prox index order used by published genotypes.

Elementwise ops broadcast when the shapes allow it; otherwise both operands are first
reduced to their means (the Auto-Prox rule), giving a 0-d result. Distance ops flatten
both operands, truncate them to the common length and return a 0-d tensor (NaN if that
length is 0). Operands are promoted to a common float dtype.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from primitives._tensor import as_matrix, float_dtype, nan, stack_matrix, stack_rows
from primitives.base import register_op
from primitives.reduce import reduce_mean, stacked_mean

BINARY_ORDER = ("element_wise_sum", "element_wise_difference", "element_wise_product", "matmul")
RARE = 0.05  # sampling weight of the ops beyond the Auto-Prox four


def _binary(name: str, text: str, latex: str, weight: float, out_kind: str = "tensor",
            commutative: bool = False, batched: Callable | None = None, broadcast: bool = False) -> Callable:
    """``broadcast``: an elementwise op under ``_align``'s rule (its batched form follows from it)."""
    def deco(fn: Callable) -> Callable:
        return register_op(name, group="binary", arity=2, out_kind=out_kind, text=text, latex=latex, weight=weight,
                           commutative=commutative, batched=_broadcast_stacks(fn) if broadcast else batched)(fn)
    return deco


# ---------------------------------------------------------------- over stacks (n, *shape) of operands
def _broadcast_stacks(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """An elementwise op (``_align``'s rule) over two stacks: operand shapes that broadcast are
    lined up behind the stack dimension; others are replaced by their means."""
    def run(a: Tensor, b: Tensor) -> Tensor:
        sa, sb = a.shape[1:], b.shape[1:]
        try:
            torch.broadcast_shapes(sa, sb)
        except RuntimeError:
            dtype = float_dtype(a, b)
            return fn(stacked_mean(a.to(dtype)), stacked_mean(b.to(dtype)))
        r = max(len(sa), len(sb))
        return fn(a.reshape(a.shape[0], *(1,) * (r - len(sa)), *sa), b.reshape(b.shape[0], *(1,) * (r - len(sb)), *sb))
    return run


def _flat_stacks(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``_flat_pair`` of each pair of operands: (n, k) and (n, k), k the common length."""
    dtype = float_dtype(a, b)
    fa, fb = stack_rows(a).to(dtype), stack_rows(b).to(dtype)
    k = min(fa.shape[1], fb.shape[1])
    return fa[:, :k], fb[:, :k]


def _stacked_matmul(a: Tensor, b: Tensor) -> Tensor:
    dtype = float_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    if a.dim() == 1 or b.dim() == 1:  # 0-d operands scale
        return _broadcast_stacks(torch.mul)(a, b)
    ma, mb = stack_matrix(a), stack_matrix(b)
    if ma.shape[2] != mb.shape[1]:
        return stacked_mean(a) * stacked_mean(b)
    return torch.bmm(ma, mb)


def _stacked_cosine(a: Tensor, b: Tensor) -> Tensor:
    return F.cosine_similarity(*_flat_stacks(a, b), dim=1)


def _stacked_l1(a: Tensor, b: Tensor) -> Tensor:
    fa, fb = _flat_stacks(a, b)
    return (fa - fb).abs().sum(dim=1)


def _stacked_mse(a: Tensor, b: Tensor) -> Tensor:
    fa, fb = _flat_stacks(a, b)
    return ((fa - fb) ** 2).mean(dim=1)


def _stacked_kl(a: Tensor, b: Tensor) -> Tensor:
    fa, fb = _flat_stacks(a, b)
    log_p, log_q = torch.log_softmax(fa, dim=1), torch.log_softmax(fb, dim=1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=1)


def _stacked_pdist(a: Tensor, b: Tensor) -> Tensor:
    dtype = float_dtype(a, b)
    ma, mb = stack_matrix(a).to(dtype), stack_matrix(b).to(dtype)
    width = min(ma.shape[2], mb.shape[2])
    return torch.cdist(ma[:, :, :width], mb[:, :, :width]).mean(dim=(1, 2))


def _align(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Common float dtype; operands that cannot broadcast are replaced by their means."""
    dtype = float_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        return reduce_mean(a), reduce_mean(b)
    return a, b


def _flat_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both operands flattened, in a common float dtype, truncated to the common length."""
    dtype = float_dtype(a, b)
    fa, fb = a.reshape(-1).to(dtype), b.reshape(-1).to(dtype)
    n = min(fa.numel(), fb.numel())
    return fa[:n], fb[:n]


@_binary("element_wise_sum", "({0} + {1})", r"\left({0} + {1}\right)", weight=0.6, commutative=True,
         broadcast=True)
def element_wise_sum(a: Tensor, b: Tensor) -> Tensor:
    """a + b, broadcast; non-broadcastable shapes -> mean(a) + mean(b)."""
    a, b = _align(a, b)
    return a + b


@_binary("element_wise_difference", "({0} - {1})", r"\left({0} - {1}\right)", weight=0.3,
         broadcast=True)
def element_wise_difference(a: Tensor, b: Tensor) -> Tensor:
    """a - b, broadcast; non-broadcastable shapes -> mean(a) - mean(b)."""
    a, b = _align(a, b)
    return a - b


@_binary("element_wise_product", "({0} * {1})", r"\left({0} \odot {1}\right)", weight=0.05, commutative=True,
         broadcast=True)
def element_wise_product(a: Tensor, b: Tensor) -> Tensor:
    """a * b elementwise, broadcast; non-broadcastable shapes -> mean(a) * mean(b)."""
    a, b = _align(a, b)
    return a * b


@_binary("matmul", "({0} @ {1})", r"\left({0}\,{1}\right)", weight=0.05,
         batched=_stacked_matmul)
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """2-D views (first dim x rest) multiplied; 0-d operand scales; inner-dim mismatch -> mean(a) * mean(b)."""
    dtype = float_dtype(a, b)
    a, b = a.to(dtype), b.to(dtype)
    if a.dim() == 0 or b.dim() == 0:
        return a * b
    ma, mb = as_matrix(a), as_matrix(b)
    if ma.shape[1] != mb.shape[0]:
        return reduce_mean(a) * reduce_mean(b)
    return ma @ mb


@_binary("greater", "({0} > {1})", r"\mathbb{{1}}\left[{0} > {1}\right]", weight=RARE,
         broadcast=True)
def greater(a: Tensor, b: Tensor) -> Tensor:
    """1.0 where a > b else 0.0 (NaN compares false), broadcast or mean-reduced like the sum."""
    a, b = _align(a, b)
    return (a > b).to(a.dtype)


@_binary("less", "({0} < {1})", r"\mathbb{{1}}\left[{0} < {1}\right]", weight=RARE,
         broadcast=True)
def less(a: Tensor, b: Tensor) -> Tensor:
    """1.0 where a < b else 0.0 (NaN compares false), broadcast or mean-reduced like the sum."""
    a, b = _align(a, b)
    return (a < b).to(a.dtype)


@_binary("maximum", "max({0}, {1})", r"\max\left({0}, {1}\right)", weight=RARE, commutative=True,
         broadcast=True)
def maximum(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise max (NaN propagates), broadcast or mean-reduced like the sum."""
    a, b = _align(a, b)
    return torch.maximum(a, b)


@_binary("minimum", "min({0}, {1})", r"\min\left({0}, {1}\right)", weight=RARE, commutative=True,
         broadcast=True)
def minimum(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise min (NaN propagates), broadcast or mean-reduced like the sum."""
    a, b = _align(a, b)
    return torch.minimum(a, b)


@_binary("cosine_similarity", "cos({0}, {1})", r"\cos\left({0}, {1}\right)", RARE, "scalar", commutative=True,
         batched=_stacked_cosine)
def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine of the flattened, truncated operands; a zero vector gives 0, empty -> NaN."""
    fa, fb = _flat_pair(a, b)
    return F.cosine_similarity(fa, fb, dim=0) if fa.numel() else nan(fa)


@_binary("kl_divergence", "KL({0} || {1})", r"D_{{\mathrm{{KL}}}}\left({0} \,\|\, {1}\right)", RARE, "scalar",
         batched=_stacked_kl)
def kl_divergence(a: Tensor, b: Tensor) -> Tensor:
    """KL(softmax(a) || softmax(b)) of the flattened, truncated operands read as logits; empty -> NaN."""
    fa, fb = _flat_pair(a, b)
    if fa.numel() == 0:
        return nan(fa)
    log_p, log_q = torch.log_softmax(fa, dim=0), torch.log_softmax(fb, dim=0)
    return F.kl_div(log_q, log_p, reduction="sum", log_target=True)


@_binary("l1_distance", "||{0} - {1}||_1", r"\left\|{0} - {1}\right\|_{{1}}", RARE, "scalar", commutative=True,
         batched=_stacked_l1)
def l1_distance(a: Tensor, b: Tensor) -> Tensor:
    """sum|a - b| of the flattened, truncated operands; empty -> NaN."""
    fa, fb = _flat_pair(a, b)
    return (fa - fb).abs().sum() if fa.numel() else nan(fa)


@_binary("mse", "mse({0}, {1})", r"\operatorname{{MSE}}\left({0}, {1}\right)", RARE, "scalar", commutative=True,
         batched=_stacked_mse)
def mse(a: Tensor, b: Tensor) -> Tensor:
    """mean((a - b)^2) of the flattened, truncated operands; empty -> NaN."""
    fa, fb = _flat_pair(a, b)
    return reduce_mean((fa - fb) ** 2)


@_binary("pairwise_distance", "pdist({0}, {1})", r"\bar{{d}}\left({0}, {1}\right)", RARE, "scalar", commutative=True,
         batched=_stacked_pdist)
def pairwise_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean Euclidean distance over row pairs (a_i, b_j) of the 2-D views cut to a common width; no rows -> NaN."""
    dtype = float_dtype(a, b)
    ma, mb = as_matrix(a).to(dtype), as_matrix(b).to(dtype)
    if ma.shape[0] == 0 or mb.shape[0] == 0:
        return nan(ma)
    width = min(ma.shape[1], mb.shape[1])
    return torch.cdist(ma[:, :width], mb[:, :width]).mean()
