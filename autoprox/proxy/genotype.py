"""Auto-Prox genotypes <-> proxy expressions.

Auto-Prox's fixed tree: two inputs, two unary ops on each branch, each branch
reduced to its mean, one binary op, then the mean over layers. Two spellings:

- string: ``INPUT:(t2, t4g)TREE:(min_max_normalize|frobenius_norm|sigmoid|element_wise_sqrt)BINARY:(element_wise_sum)``
- indices: inputs ``['t3g', 't2']`` and ops ``[[5, 10], [14, 6], 0]`` (UNARY_ORDER / BINARY_ORDER)
"""
from __future__ import annotations

import re
from typing import Sequence

import primitives
from autoprox.proxy.graph import Expr, GraphError, canonical_leaf, check, make
from autoprox.stats.base import AUTOPROX_INPUTS

_GENOTYPE = re.compile(r"^\s*INPUT:\((?P<inp>[^)]*)\)\s*TREE:\((?P<tree>[^)]*)\)\s*BINARY:\((?P<bin>[^)]*)\)\s*$")
_SHORT = {v: k for k, v in AUTOPROX_INPUTS.items()}
_PUBLISHED = {v: k for k, v in primitives.ALIASES.items()}  # registry name -> published spelling


def tree(inputs: Sequence[str], unary: Sequence[str], binary: str) -> Expr:
    """The Auto-Prox tree as an expression."""
    if len(inputs) != 2 or len(unary) != 4:
        raise GraphError(f"an Auto-Prox tree has 2 inputs and 4 unary ops, got {list(inputs)} / {list(unary)}")
    branches = []
    for leaf, ops in ((inputs[0], unary[:2]), (inputs[1], unary[2:])):
        e = Expr(canonical_leaf(leaf.strip()))
        for op in ops:
            e = make(op.strip(), e)
        branches.append(make("to_mean_scalar", e))
    return check(make("agg_mean", make(binary.strip(), *branches)))


def parse_genotype(text: str) -> Expr:
    """Parse the published string form."""
    m = _GENOTYPE.match(text)
    if not m:
        raise GraphError(f"not an Auto-Prox genotype: {text!r} (expected INPUT:(..)TREE:(..|..|..|..)BINARY:(..))")
    return tree(m["inp"].split(","), m["tree"].split("|"), m["bin"])


def from_indices(inputs: Sequence[str], ops: Sequence) -> Expr:
    """Parse the index form ``[[u0, u1], [u2, u3], b]``."""
    try:
        (u0, u1), (u2, u3), b = ops
        unary = [primitives.UNARY_ORDER[i] for i in (u0, u1, u2, u3)]
        binary = primitives.BINARY_ORDER[b]
    except (ValueError, TypeError, IndexError):
        raise GraphError(f"bad Auto-Prox op indices {ops!r}: expected [[u,u],[u,u],b] with "
                         f"u < {len(primitives.UNARY_ORDER)}, b < {len(primitives.BINARY_ORDER)}") from None
    return tree(inputs, unary, binary)


def to_genotype(e: Expr) -> str | None:
    """The string form of ``e`` if it has the Auto-Prox tree shape, else None."""
    if e.head != "agg_mean" or len(e.args[0].args) != 2:
        return None
    binary, branches = e.args[0].head, e.args[0].args
    inputs, unary = [], []
    for br in branches:
        if br.head != "to_mean_scalar":
            return None
        chain, x = [], br.args[0]
        while x.args and len(x.args) == 1 and len(chain) < 2:
            chain.insert(0, _PUBLISHED.get(x.head, x.head))
            x = x.args[0]
        if len(chain) != 2 or not x.is_leaf or x.head not in _SHORT:
            return None
        inputs.append(_SHORT[x.head])
        unary += chain
    return f"INPUT:({', '.join(inputs)})TREE:({'|'.join(unary)})BINARY:({binary})"
