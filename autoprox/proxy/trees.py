"""Regression trees over an arch surrogate's inputs (its one-hot columns, then its parts' ranks / n).

A tree is a tuple of nodes, the root first: ``(value,)`` is a leaf; ``(input, threshold, left, right)``
sends an arch whose input is ``<= threshold`` to node ``left``, else to ``right``. A child always comes
after its parent, so every walk ends. The trees' output is the sum of the leaves an arch reaches,
tree by tree in order, so one arch gets the same bits alone or among any others.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

Tree = tuple  # of nodes: (value,) or (input, threshold, left, right)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _index(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_trees(trees: Any, n_inputs: int, name: str) -> tuple[Tree, ...]:
    """``trees`` as tuples of ints and floats; ``ValueError`` naming the first bad tree and node."""
    if not isinstance(trees, (list, tuple)):
        raise ValueError(f"surrogate {name!r}: 'trees' must list trees, each a list of nodes")
    out = []
    for t, tree in enumerate(trees):
        if not isinstance(tree, (list, tuple)) or not tree:
            raise ValueError(f"surrogate {name!r}: tree {t} must list at least one node")
        nodes = []
        for i, node in enumerate(tree):
            where = f"surrogate {name!r}: tree {t} node {i}"
            if not isinstance(node, (list, tuple)) or len(node) not in (1, 4):
                raise ValueError(f"{where} must be [value] (a leaf) or [input, threshold, left, right]")
            if len(node) == 1:
                if not _number(node[0]) or not math.isfinite(node[0]):
                    raise ValueError(f"{where}: a leaf's value must be a finite number, got {node[0]!r}")
                nodes.append((float(node[0]),))
                continue
            k, thr, left, right = node
            if not (_index(k) and 0 <= k < n_inputs):
                raise ValueError(f"{where}: input must be an index below {n_inputs} (columns, then parts), got {k!r}")
            if not _number(thr) or math.isnan(thr):
                raise ValueError(f"{where}: threshold must be a number, got {thr!r}")
            if not all(_index(c) and i < c < len(tree) for c in (left, right)) or left == right:
                raise ValueError(f"{where}: left and right must be two nodes after it in the same tree")
            nodes.append((int(k), float(thr), int(left), int(right)))
        out.append(tuple(nodes))
    return tuple(out)


def remap(trees: Sequence[Tree], new_index: Sequence[int]) -> tuple[Tree, ...]:
    """The trees reading input ``new_index[i]`` where they read input ``i``."""
    return tuple(tuple(n if len(n) == 1 else (new_index[n[0]], *n[1:]) for n in tree) for tree in trees)


def negate(trees: Sequence[Tree]) -> tuple[Tree, ...]:
    """The trees with every leaf's sign flipped."""
    return tuple(tuple((-n[0],) if len(n) == 1 else n for n in tree) for tree in trees)


def predict(trees: Sequence[Tree], x: np.ndarray) -> np.ndarray:
    """(archs x inputs) -> (archs,) sum of the leaves reached; NaN for an arch with a NaN input."""
    x = np.asarray(x, dtype=np.float64)
    total = np.zeros(len(x))
    for tree in trees:
        at = np.zeros(len(x), dtype=np.int64)
        for i, node in enumerate(tree):  # children come after parents: one sweep settles every arch
            if len(node) == 4:
                here = at == i
                at[here] = np.where(x[here, node[0]] <= node[1], node[2], node[3])
        leaves = np.array([n[0] if len(n) == 1 else np.nan for n in tree])
        total = total + leaves[at]
    total[np.isnan(x).any(axis=1)] = np.nan
    return total


def text(trees: Sequence[Tree]) -> str:
    """Every node of every tree, every digit: what a hash covers."""
    return "; ".join("(" + ", ".join("/".join(repr(v) for v in n) for n in tree) + ")" for tree in trees)


def depth(tree: Tree) -> int:
    """Splits on the longest path from the root to a leaf."""
    d = [0] * len(tree)
    for i, n in enumerate(tree):
        if len(n) == 4:
            d[n[2]] = d[n[3]] = d[i] + 1
    return max(d)
