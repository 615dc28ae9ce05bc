"""Proxies as typed computation graphs over ViT statistics.

A graph is a ``networkx.DiGraph``: leaves carry ``stat`` (a statistic family or a
scalar), inner nodes carry ``op`` (a ``primitives`` op) and receive their operands
on edges with attribute ``pos``; ``graph.graph["output"]`` names the result node.

Values are either *layered* (one tensor per layer, with layer kinds) or single
tensors. Unary ops map over layers; binary ops pair layers by position (the
shorter list wins) and broadcast a single value; an aggregation turns per-layer
values into one scalar (a per-layer tensor is first reduced to its mean). A proxy
must end in one scalar.

Every graph compiles to a canonical expression (commutative operands sorted);
its string is the proxy's identity (``proxy_hash``) and the key under which a
population shares common sub-expressions during evaluation.
"""
from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, MutableMapping, Sequence

import networkx as nx
import torch

import primitives
from autoprox.core.errors import AutoproxError
from autoprox.proxy.evalcore import apply_op, leaf_value
from autoprox.spaces.base import ARCH_SCALARS
from autoprox.stats.base import AUTOPROX_INPUTS, SCALARS, ArchStats
from autoprox.stats.passes import all_families, scalar_families, single_families

DATA_FREE = frozenset({"num_params", "flops", *ARCH_SCALARS})  # from the arch alone: no model is built
# Errors a proxy may raise on an arch's statistics: they score NaN (then invalid), never crash a run.
SCORE_ERRORS = (ArithmeticError, RuntimeError, ValueError, IndexError)


def leaf_names() -> tuple[str, ...]:
    """Every leaf a graph may read: the registered statistic families and the scalars."""
    return all_families() + SCALARS


class GraphError(ValueError, AutoproxError):
    """An invalid proxy graph or expression."""


@dataclass(frozen=True)
class Expr:
    """A node of the canonical expression tree."""

    head: str  # op name, or statistic name for a leaf
    args: tuple["Expr", ...] = ()

    @property
    def is_leaf(self) -> bool:
        return not self.args and self.head in leaf_names()

    def __str__(self) -> str:
        return self.head if not self.args else f"{self.head}({','.join(map(str, self.args))})"


def canonical_leaf(name: str) -> str:
    name = AUTOPROX_INPUTS.get(name, name)
    if name not in leaf_names():
        raise GraphError(f"unknown statistic {name!r}; known: {', '.join(leaf_names())} "
                         f"(Auto-Prox aliases: {', '.join(AUTOPROX_INPUTS)})")
    return name


def op_of(name: str) -> primitives.Op:
    name = primitives.ALIASES.get(name, name)
    try:
        return primitives.get_op(name)
    except KeyError as e:
        raise GraphError(str(e.args[0]) if e.args else f"unknown op {name!r}") from None


# ---------------------------------------------------------------- types
def expr_type(e: Expr) -> tuple[bool, bool]:
    """(layered, scalar) of an expression, raising GraphError on a mismatch."""
    if e.is_leaf:
        return (e.head not in SCALARS + single_families(), e.head in SCALARS + scalar_families())
    op = op_of(e.head)
    if len(e.args) != op.arity:
        raise GraphError(f"op {op.name!r} takes {op.arity} input(s), got {len(e.args)}")
    types = [expr_type(a) for a in e.args]
    if op.group == "aggregate":
        if not types[0][0]:
            raise GraphError(f"aggregation {op.name!r} needs per-layer input, got a single value "
                             f"from {e.args[0]}")
        return (False, True)
    layered = any(t[0] for t in types)
    if op.out_kind == "scalar":
        return (layered, True)
    return (layered, all(t[1] for t in types) and op.out_kind != "vector")


def check(e: Expr) -> Expr:
    """Validate a whole expression: a proxy ends in one scalar."""
    layered, _ = expr_type(e)
    if layered:
        raise GraphError(f"a proxy must end in one value, but {e} is per-layer: add an aggregation")
    return e


# ---------------------------------------------------------------- graph <-> expr
def to_expr(g: nx.DiGraph) -> Expr:
    """Validate graph ``g`` and compile it to its canonical expression."""
    out = g.graph.get("output")
    if out is None or out not in g:
        raise GraphError("graph has no valid 'output' node")
    if not nx.is_directed_acyclic_graph(g):
        raise GraphError(f"graph has a cycle: {nx.find_cycle(g)}")
    dangling = set(g) - nx.ancestors(g, out) - {out}
    if dangling:
        raise GraphError(f"dangling node(s) not feeding the output: {sorted(map(str, dangling))}")
    check_graph_size(g)

    def build(n: Any) -> Expr:
        data = g.nodes[n]
        preds = sorted(g.in_edges(n, data=True), key=lambda t: t[2].get("pos", 0))
        if "stat" in data:
            if preds:
                raise GraphError(f"leaf {n!r} ({data['stat']}) must have no inputs")
            return Expr(canonical_leaf(data["stat"]))
        if "op" not in data:
            raise GraphError(f"node {n!r} has neither 'op' nor 'stat'")
        if [p[2].get("pos", 0) for p in preds] != list(range(len(preds))):
            raise GraphError(f"node {n!r}: input positions must be 0..{len(preds) - 1}")
        return make(data["op"], *(build(p[0]) for p in preds))

    return check(build(out))


MAX_NODES = 10_000  # nodes of a graph's expression written out (a shared node counted at each use)


def check_graph_size(g: nx.DiGraph) -> None:
    """``GraphError`` when a (acyclic) graph nests deeper than ``MAX_DEPTH`` or writes out to more than
    ``MAX_NODES`` expression nodes (a chain of shared pairs doubles at each step), measured without
    recursion before any recursive walk of it."""
    depth: dict[Any, int] = {}
    size: dict[Any, int] = {}
    for n in nx.topological_sort(g):
        preds = [p for p, _ in g.in_edges(n)]
        depth[n] = 1 + max((depth[p] for p in preds), default=-1)
        size[n] = 1 + sum(size[p] for p in preds)
        if depth[n] > MAX_DEPTH:
            raise GraphError(f"graph nested more than {MAX_DEPTH} ops deep at node {n!r}; at most {MAX_DEPTH} "
                             f"levels are accepted")
        if size[n] > MAX_NODES:
            raise GraphError(f"graph's expression grows beyond {MAX_NODES:,} nodes at node {n!r} (shared nodes "
                             f"count at each use)")


def make(op: str, *args: Expr) -> Expr:
    """An op node in canonical form (commutative operands sorted)."""
    o = op_of(op)
    if getattr(o, "commutative", False):
        args = tuple(sorted(args, key=str))
    return Expr(o.name, tuple(args))


def to_graph(e: Expr) -> nx.DiGraph:
    """A DiGraph with one node per distinct sub-expression, ids n0.. in post-order."""
    g = nx.DiGraph()
    ids: dict[str, str] = {}

    def add(x: Expr) -> str:
        key = str(x)
        if key in ids:
            return ids[key]
        kids = [add(a) for a in x.args]
        nid = ids[key] = f"n{len(ids)}"
        g.add_node(nid, **({"stat": x.head} if x.is_leaf else {"op": x.head}))
        for pos, k in enumerate(kids):
            g.add_edge(k, nid, pos=pos)
        return nid

    g.graph["output"] = add(e)
    return g


_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[(),])")


MAX_DEPTH = 64  # nesting of an expression (evolution's genomes stay far below; Python's stack does not)


def parse(text: str) -> Expr:
    """Parse the expression syntax ``op(arg, arg)`` / ``statistic``."""
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != re.sub(r"\s+", "", text):
        raise GraphError(f"cannot parse proxy expression {text!r:.80}")
    depth = max(itertools.accumulate(1 if t == "(" else -1 if t == ")" else 0 for t in tokens), default=0)
    if depth > MAX_DEPTH:
        raise GraphError(f"proxy expression nested {depth} deep; at most {MAX_DEPTH} levels are accepted")
    pos = 0

    def node() -> Expr:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] in "(),":
            raise GraphError(f"expected a name at token {pos} of {text!r}")
        name = tokens[pos]
        pos += 1
        if pos < len(tokens) and tokens[pos] == "(":
            pos += 1
            args = [node()]
            while tokens[pos] == ",":
                pos += 1
                args.append(node())
            if tokens[pos] != ")":
                raise GraphError(f"expected ')' in {text!r}")
            pos += 1
            return make(name, *args)
        return Expr(canonical_leaf(name))

    try:
        e = node()
    except IndexError:
        raise GraphError(f"unexpected end of proxy expression {text!r}") from None
    if pos != len(tokens):
        raise GraphError(f"trailing text in proxy expression {text!r}")
    return check(e)


def proxy_hash(e: Expr) -> str:
    return hashlib.sha1(str(e).encode()).hexdigest()[:12]


def leaves(e: Expr) -> frozenset[str]:
    return frozenset({e.head}) if e.is_leaf else frozenset().union(*(leaves(a) for a in e.args))


# ---------------------------------------------------------------- evaluation
def evaluate(e: Expr, stats: ArchStats, memo: MutableMapping[str, Any] | None = None):
    """Value of ``e`` on one arch's statistics; ``memo`` shares sub-expressions."""
    memo = {} if memo is None else memo
    key = str(e)
    if key not in memo:
        if e.is_leaf:
            if e.head in SCALARS and e.head not in stats.scalars:
                raise KeyError(f"scalar {e.head!r} not in statistics")
            memo[key] = leaf_value(e.head, stats.tensors, stats.kinds, stats.scalars, single_families())
        else:
            op = op_of(e.head)
            value = apply_op(op.fn, op.group == "aggregate", [evaluate(a, stats, memo) for a in e.args])
            if isinstance(memo, SharedMemo):
                memo.release(str(a) for a in e.args)
            memo[key] = value
    return memo[key]


class SharedMemo(dict):
    """The memo of many expressions on one arch that frees each sub-expression's value after
    its last use, so a population holds the values in flight, not every intermediate of every
    member (full-size per-layer tensors: a few hundred MB per member on a large arch)."""

    def __init__(self, exprs: Sequence[Expr]) -> None:
        super().__init__()
        self.uses: Counter[str] = Counter(str(e) for e in exprs)
        seen: set[str] = set()
        stack = list(exprs)
        while stack:
            e = stack.pop()
            if (k := str(e)) in seen:
                continue
            seen.add(k)
            self.uses.update(str(a) for a in e.args)  # one use per edge of the shared graph
            stack.extend(e.args)

    def release(self, keys: Iterable[str]) -> None:
        """One use of each of ``keys`` is done: drop the values no one will read again."""
        for k in keys:
            self.uses[k] -= 1
            if self.uses[k] <= 0:
                self.pop(k, None)


@dataclass(frozen=True)
class GraphProxy:
    """A named proxy backed by a canonical expression."""

    name: str
    expr: Expr
    description: str = ""

    @classmethod
    def from_text(cls, name: str, text: str, description: str = "") -> "GraphProxy":
        return cls(name, parse(text), description)

    @property
    def families(self) -> frozenset[str]:
        return leaves(self.expr) - DATA_FREE

    @property
    def hash(self) -> str:
        return proxy_hash(self.expr)

    @property
    def parts(self) -> tuple["GraphProxy", ...]:
        """The graphs scored per arch: itself (a fused proxy has several)."""
        return (self,)

    fused = False  # its score of an arch does not depend on the other archs

    @property
    def text(self) -> str:
        """Canonical text (the expression); ``autoprox.proxy.spec.resolve`` reads it back."""
        return str(self.expr)

    def negated(self) -> "GraphProxy":
        """The same proxy ranking archs the other way round."""
        return GraphProxy(self.name, make("negate", self.expr), self.description)

    reads_arch = False  # its score comes from the statistics alone

    def combine(self, matrix: Any, archs: Any = None) -> Any:
        """(parts x archs) part scores -> (archs,) scores: the one row (``archs`` unused)."""
        return matrix[0]

    def score(self, stats: ArchStats, memo: MutableMapping[str, Any] | None = None) -> float:
        v = evaluate(self.expr, stats, memo)
        return float(v.float().mean()) if isinstance(v, torch.Tensor) else float("nan")


def score_population(proxies: list[GraphProxy], stats: ArchStats) -> list[float]:
    """Scores of many graph proxies on one arch, each sub-expression computed once."""
    memo = SharedMemo([p.expr for p in proxies])
    out = []
    for p in proxies:
        try:
            out.append(p.score(stats, memo))
        except AutoproxError:  # a cache entry changed under the reader: the run stops, no score is made up
            raise
        except SCORE_ERRORS:
            out.append(float("nan"))
        memo.release([str(p.expr)])
    return out


def graph_from_mapping(d: Mapping[str, Any]) -> nx.DiGraph:
    """Inverse of ``graph_to_mapping`` (the YAML form)."""
    if not isinstance(d, Mapping) or not isinstance(d.get("nodes"), list):
        raise GraphError(f"malformed graph mapping: expected 'nodes' (a list) and 'output', got {d!r:.60}")
    try:
        g = nx.DiGraph(output=d["output"])
        for n in d["nodes"]:
            attrs = {k: n[k] for k in ("op", "stat") if k in n}
            g.add_node(n["id"], **attrs)
            for pos, src in enumerate(n.get("inputs", [])):
                g.add_edge(src, n["id"], pos=pos)
    except (KeyError, TypeError) as e:
        raise GraphError(f"malformed graph mapping: missing {e}") from None
    return g


def graph_to_mapping(g: nx.DiGraph) -> dict[str, Any]:
    nodes = []
    for n in nx.topological_sort(g):
        d = {"id": n, **{k: g.nodes[n][k] for k in ("op", "stat") if k in g.nodes[n]}}
        preds = sorted(g.in_edges(n, data=True), key=lambda t: t[2].get("pos", 0))
        if preds:
            d["inputs"] = [p[0] for p in preds]
        nodes.append(d)
    return {"nodes": nodes, "output": g.graph["output"]}
