"""Every op's ``batched`` form equals its ``fn`` applied to each operand of a stack."""
from __future__ import annotations

import math

import pytest
import torch

import primitives

SHAPES = [(), (1,), (5,), (3, 3), (4, 6), (2, 3, 4), (6, 4), (3,)]


def _stack(shape: tuple, n: int, g: torch.Generator, special: bool) -> torch.Tensor:
    x = torch.randn((n, *shape), generator=g)
    if special and x[0].numel() > 1:
        x[1] = 2.5  # a constant operand
        x[2].view(-1)[0] = math.nan
        x[3].view(-1)[-1] = math.inf
        x[4].view(-1)[0] = 0.0
    return x


def _reference(fn, *stacks: torch.Tensor) -> list[torch.Tensor]:
    return [fn(*(s[i] for s in stacks)) for i in range(stacks[0].shape[0])]


def _check(out, ref: list[torch.Tensor], what: str) -> None:
    if out is None:  # the op declines: results of different shapes
        assert len({tuple(r.shape) for r in ref}) > 1, f"{what}: declined although every result has one shape"
        return
    assert out.shape[0] == len(ref), what
    for i, r in enumerate(ref):
        assert tuple(out[i].shape) == tuple(r.shape), f"{what} operand {i}: {tuple(out[i].shape)} vs {tuple(r.shape)}"
        torch.testing.assert_close(out[i], r, rtol=1e-5, atol=1e-6, equal_nan=True, msg=f"{what} operand {i}")


UNARY = [n for n in primitives.list_ops() if primitives.get_op(n).group in ("unary", "reduce")]
BINARY = primitives.list_ops("binary")


@pytest.mark.parametrize("name", UNARY)
def test_unary_stacks(name):
    op, g = primitives.get_op(name), torch.Generator().manual_seed(0)
    for shape in SHAPES:
        for special in (False, True):
            x = _stack(shape, 6, g, special)
            if name in ("logdet", "eigvalsh", "nuclear_norm") and shape == (3, 3):
                x = x @ x.mT  # symmetric, some operands singular below
                x[5] = 0.0
            _check(op.batched(x), _reference(op.fn, x), f"{name}{shape}{' special' if special else ''}")


@pytest.mark.parametrize("name", BINARY)
def test_binary_stacks(name):
    op, g = primitives.get_op(name), torch.Generator().manual_seed(1)
    for sa in SHAPES:
        for sb in SHAPES:
            a, b = _stack(sa, 5, g, False), _stack(sb, 5, g, True)
            _check(op.batched(a, b), _reference(op.fn, a, b), f"{name}{sa}x{sb}")


@pytest.mark.parametrize("name", primitives.list_ops("aggregate"))
def test_aggregation_over_groups(name):
    op, g = primitives.get_op(name), torch.Generator().manual_seed(2)
    names = ("attn_qkv", "attn_proj", "mlp_fc1", "mlp_fc2", "patch", "norm")
    values = torch.randn(40, generator=g)
    values[3], values[17] = math.nan, math.inf
    codes = torch.randint(0, len(names), (40,), generator=g)
    groups = torch.randint(0, 6, (40,), generator=g)
    groups[groups == 5] = 4  # group 5 has no layers: an empty selection
    out = op.batched(values, codes, names, groups, 6)
    for k in range(6):
        sel = groups == k
        ref = op.fn(values[sel], [names[c] for c in codes[sel].tolist()])
        torch.testing.assert_close(out[k], ref.to(out.dtype), rtol=1e-6, atol=1e-6, equal_nan=True,
                                   msg=f"{name} group {k}")
