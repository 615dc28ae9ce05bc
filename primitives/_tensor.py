"""Small tensor helpers shared by the op modules."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def float_dtype(*xs: Tensor) -> torch.dtype:
    """The promoted dtype of ``xs`` if floating, else torch's default float dtype."""
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def nan(like: Tensor) -> Tensor:
    """A 0-d NaN with the float dtype and device of ``like``."""
    return torch.full((), math.nan, dtype=float_dtype(like), device=like.device)


def as_matrix(x: Tensor) -> Tensor:
    """2-D view of ``x``: first dim x product of the rest; a 0-d tensor becomes 1x1."""
    if x.dim() == 0:
        return x.reshape(1, 1)
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def nuclear(m: Tensor) -> Tensor:
    """The nuclear norm of ``m`` (2-D, or a stack of matrices), from its SVD on the tall side: a wide
    matrix is transposed first, the same singular values, and LAPACK's SVD is several times faster."""
    return torch.linalg.matrix_norm(m.mT if m.shape[-2] < m.shape[-1] else m, ord="nuc")


def finite_matrix(x: Tensor) -> Tensor | None:
    """``as_matrix(x)`` if it is non-empty and finite, else None."""
    m = as_matrix(x)
    if m.numel() == 0 or not bool(torch.isfinite(m).all()):
        return None
    return m


def square_matrix(x: Tensor) -> Tensor | None:
    """``finite_matrix(x)`` if it is square, else None."""
    m = finite_matrix(x)
    return m if m is not None and m.shape[0] == m.shape[1] else None


# ---------------------------------------------------------------- stacks (an op's ``batched`` form)
def stack_rows(x: Tensor) -> Tensor:
    """A stack ``(n, *shape)`` as ``(n, numel(shape))``: each operand flattened."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def stack_matrix(x: Tensor) -> Tensor:
    """A stack ``(n, *shape)`` as ``(n, r, c)``: each operand's ``as_matrix`` view."""
    if x.dim() == 1:
        return x.reshape(x.shape[0], 1, 1)
    return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))


def finite_rows(m: Tensor) -> Tensor:
    """``(n,)``: whether each operand of the stack ``m`` is finite throughout."""
    return torch.isfinite(m.reshape(m.shape[0], -1)).all(dim=1)


def nan_where(bad: Tensor, values: Tensor) -> Tensor:
    """``values`` (one per operand) with NaN where ``bad``."""
    return torch.where(bad, torch.full_like(values, math.nan), values)
