"""Random generation, mutation and crossover of proxies, for evolution.

Two genome structures, both plain lists of strings (JSON- and pickle-friendly):

- ``autoprox_tree``: Auto-Prox's fixed tree, genes ``[input0, input1, u0, u1, u2, u3, binary]``
  (``genotype.tree``). Mutation resamples each gene with probability ``gene_prob``;
  crossover takes each gene from either parent.
- ``free``: one gene, a canonical expression string of a free typed graph. Mutation swaps
  an op, swaps an input, inserts or deletes a unary node, or regrows a subtree;
  crossover swaps type-compatible subtrees. Children larger than ``max_nodes`` or
  deeper than ``max_depth``, or ill-typed, are redrawn. With ``max_parts`` > 1 a genome
  may hold up to that many expressions (sorted), fused across archs by ``fusion``
  (``rank_sum``: a size term plus a trainability term, say); mutation then also adds or
  drops a part (probability ``fuse_prob``), and crossover of fused genomes mixes parts.

Every draw comes from the ``random.Random`` passed in, so a seed fixes a whole run.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Sequence

import primitives
from autoprox.core.config import check_ranges
from autoprox.proxy.fuse import FusedProxy, get_fusion
from autoprox.proxy.genotype import tree
from autoprox.proxy.graph import Expr, GraphError, GraphProxy, expr_type, canonical_leaf, check, make, parse
from autoprox.stats.base import AUTOPROX_INPUTS
from autoprox.stats.passes import get_pass

Genome = list  # list[str]
Path = tuple[int, ...]
STRUCTURES = ("autoprox_tree", "free")
DEFAULT_LEAVES = tuple(AUTOPROX_INPUTS.values()) + ("virtual_grad", "attention", "attention_grad", "fisher")
# default single leaves: the base pass's matrices (an evolution run computes no other pass unless asked)
SINGLE_LEAVES = ("num_params", "flops") + get_pass("base").matrix  # the default pool of single_leaves


def is_single(name: str) -> bool:
    """Whether statistic ``name`` holds one value per arch (a scalar or a matrix), not one per layer."""
    return not expr_type(Expr(canonical_leaf(name)))[0]


def is_scalar(name: str) -> bool:
    """Whether statistic ``name`` is one number per arch: a proxy on its own."""
    return expr_type(Expr(canonical_leaf(name)))[1]


@dataclass(frozen=True)
class VariationConfig:
    """What evolution may build: structure, statistics, ops and size limits."""

    structure: str = "free"
    leaves: tuple[str, ...] = DEFAULT_LEAVES       # per-layer statistics
    single_leaves: tuple[str, ...] = SINGLE_LEAVES  # one value per arch (free graphs only)
    unary: tuple[str, ...] = ()        # default: every unary and reduce op
    binary: tuple[str, ...] = ()       # default: every binary op (with its sampling weight)
    aggregations: tuple[str, ...] = ()  # default: every aggregation
    gene_prob: float = 0.5
    max_nodes: int = 16
    max_depth: int = 7
    tries: int = 50
    max_parts: int = 1             # free only: > 1 lets genomes fuse that many expressions
    fusion: str = "rank_sum"       # how parts combine across archs (autoprox.proxy.fuse)
    fuse_prob: float = 0.3         # chance a new genome, or a mutation, adds (or drops) a part
    parsimony: float = 0.0         # selection reads train JCM - parsimony * (nodes - 1), all parts' nodes

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        if not self.leaves:
            raise ValueError("leaves must name at least one per-layer statistic")
        for names, single in ((self.leaves, False), (self.single_leaves, True)):
            for name in names:
                if is_single(name) != single:
                    where = "single_leaves" if not single else "leaves"
                    raise ValueError(f"statistic {name!r} belongs under {where}")
        for group, names in (("unary", self.unary), ("binary", self.binary), ("aggregate", self.aggregations)):
            for n in names:
                op = primitives.get_op(n)
                if op.group not in ((group, "reduce") if group == "unary" else (group,)):
                    raise ValueError(f"op {n!r} is a {op.group} op, not {group}")
        check_ranges(self, "variation", {"gene_prob": (0, 1), "max_nodes": (4, None), "max_depth": (3, None),
                                         "tries": (1, None), "max_parts": (1, 3), "fuse_prob": (0, 1),
                                         "parsimony": (0, 0.1)})
        if self.max_parts > 1 and self.structure != "free":
            raise ValueError(f"variation.max_parts above 1 needs structure free, got {self.structure!r}")
        get_fusion(self.fusion)  # unknown fusion: error naming the known ones

    def ops(self, group: str) -> list[str]:
        chosen = {"unary": self.unary, "binary": self.binary, "aggregate": self.aggregations}[group]
        if chosen:
            return list(chosen)
        if group == "unary":
            return [n for n in primitives.list_ops("unary") + primitives.list_ops("reduce")
                    if primitives.get_op(n).out_kind != "vector"]
        return primitives.list_ops(group)


def _pick(rng: random.Random, names: Sequence[str]) -> str:
    weights = [primitives.get_op(n).weight if n in primitives.list_ops() else 1.0 for n in names]
    return rng.choices(list(names), weights=weights)[0]


# ---------------------------------------------------------------- genome <-> expression
def to_expr(genome: Sequence[str], cfg: VariationConfig) -> Expr:
    """The proxy expression of a one-part genome (raises ``GraphError`` if ill-typed)."""
    if cfg.structure == "autoprox_tree":
        return tree(genome[:2], genome[2:6], genome[6])
    return parse(genome[0])


def to_proxy(genome: Sequence[str], cfg: VariationConfig) -> GraphProxy | FusedProxy:
    """The proxy a genome encodes: one graph, or its parts fused by ``cfg.fusion``. A step asks for
    the same genomes several times (memo, probe, scoring, hall of fame): each is parsed once."""
    return _parsed(tuple(genome), cfg)


@functools.lru_cache(maxsize=8192)
def _parsed(genome: tuple[str, ...], cfg: VariationConfig) -> GraphProxy | FusedProxy:
    if cfg.structure == "autoprox_tree" or len(genome) == 1:
        e = to_expr(genome, cfg)
        return GraphProxy(str(e), e)
    parts = tuple(GraphProxy.from_text(f"part{i}", g) for i, g in enumerate(sorted(genome)))
    return FusedProxy("", parts, cfg.fusion)  # named by its text


def random_genome(rng: random.Random, cfg: VariationConfig) -> Genome:
    """A random well-typed genome."""
    for _ in range(cfg.tries):
        if cfg.structure == "autoprox_tree":
            g = [rng.choice(cfg.leaves), rng.choice(cfg.leaves), *(_pick(rng, primitives.UNARY_ORDER)
                                                                    for _ in range(4)),
                 _pick(rng, primitives.BINARY_ORDER)]
        else:
            g = [str(_grow_root(rng, cfg, cfg.max_depth - 1))]
            while len(g) < cfg.max_parts and rng.random() < cfg.fuse_prob:
                g = sorted({*g, str(_grow_root(rng, cfg, cfg.max_depth - 1))})
        if _ok(g, cfg):
            return g
    raise GraphError("could not draw a valid proxy; widen the leaves/ops or raise max_nodes")


def _ok(genome: Sequence[str], cfg: VariationConfig) -> bool:
    if cfg.structure == "autoprox_tree":
        try:
            to_expr(genome, cfg)
        except (GraphError, KeyError):
            return False
        return True
    if not 1 <= len(genome) <= cfg.max_parts or len(set(genome)) != len(genome) or list(genome) != sorted(genome):
        return False
    for g in genome:
        try:
            e = parse(g)
        except (GraphError, KeyError):
            return False
        if size(e) > cfg.max_nodes or depth(e) > cfg.max_depth:
            return False
    return True


# ---------------------------------------------------------------- free graphs
def size(e: Expr) -> int:
    return 1 + sum(size(a) for a in e.args)


def depth(e: Expr) -> int:
    return 1 + max((depth(a) for a in e.args), default=0)


def _grow_layered(rng: random.Random, cfg: VariationConfig, d: int) -> Expr:
    if d <= 1 or rng.random() < 0.3:
        return parse_leaf(rng.choice(cfg.leaves))
    if rng.random() < 0.75:
        return make(_pick(rng, cfg.ops("unary")), _grow_layered(rng, cfg, d - 1))
    return make(_pick(rng, cfg.ops("binary")), _grow_layered(rng, cfg, d - 1), _grow_layered(rng, cfg, d - 1))


def _grow_single(rng: random.Random, cfg: VariationConfig, d: int) -> Expr:
    """A one-value-per-arch expression: an aggregation of per-layer values, or a single leaf."""
    if cfg.single_leaves and rng.random() < 0.2:
        leaf = parse_leaf(rng.choice(cfg.single_leaves))
        return leaf if is_scalar(leaf.head) else make(_pick(rng, cfg.ops("unary")), leaf)
    return make(_pick(rng, cfg.ops("aggregate")), _grow_layered(rng, cfg, d - 1))


def _grow_root(rng: random.Random, cfg: VariationConfig, d: int) -> Expr:
    if rng.random() < 0.7:
        return _grow_single(rng, cfg, d)
    return make(_pick(rng, cfg.ops("binary")), _grow_single(rng, cfg, d - 1), _grow_single(rng, cfg, d - 1))


def parse_leaf(name: str) -> Expr:
    return Expr(canonical_leaf(name))


def paths(e: Expr, at: Path = ()) -> list[Path]:
    """Every node's path (argument indices from the root), root first."""
    out = [at]
    for i, a in enumerate(e.args):
        out += paths(a, at + (i,))
    return out


def get(e: Expr, p: Path) -> Expr:
    for i in p:
        e = e.args[i]
    return e


def replace(e: Expr, p: Path, new: Expr) -> Expr:
    """``e`` with the node at ``p`` replaced (rebuilt canonically)."""
    if not p:
        return new
    args = list(e.args)
    args[p[0]] = replace(args[p[0]], p[1:], new)
    return make(e.head, *args)


def _layered(e: Expr) -> bool:
    try:
        return expr_type(e)[0]
    except GraphError:
        return False


def _mutate_free(e: Expr, rng: random.Random, cfg: VariationConfig) -> Expr:
    p = rng.choice(paths(e))
    node = get(e, p)
    kind = rng.choice(("op", "input", "insert", "delete", "subtree"))
    if kind == "input" or (node.is_leaf and kind == "op"):
        leaves = [q for q in paths(e) if get(e, q).is_leaf]
        q = rng.choice(leaves)
        pool = cfg.single_leaves if is_single(get(e, q).head) else cfg.leaves
        return replace(e, q, parse_leaf(rng.choice(pool)))
    if kind == "op":
        group = primitives.get_op(node.head).group
        pool = cfg.ops("unary" if group == "reduce" else group)
        return replace(e, p, make(_pick(rng, pool), *node.args))
    if kind == "insert":
        return replace(e, p, make(_pick(rng, cfg.ops("unary")), node))
    if kind == "delete":
        unary = [q for q in paths(e) if len(get(e, q).args) == 1]
        if not unary:
            return e
        q = rng.choice(unary)
        return replace(e, q, get(e, q).args[0])
    grown = _grow_layered(rng, cfg, 3) if _layered(node) else _grow_single(rng, cfg, 3)
    return replace(e, p, grown)


def mutate(genome: Sequence[str], rng: random.Random, cfg: VariationConfig) -> Genome:
    """A valid mutant that differs from ``genome`` (or a copy of it if none is found)."""
    for _ in range(cfg.tries):
        if cfg.structure == "autoprox_tree":
            fresh = random_genome(rng, cfg)
            g = [f if rng.random() < cfg.gene_prob else old for old, f in zip(genome, fresh)]
        else:
            try:
                g = _mutate_parts(list(genome), rng, cfg)
            except (GraphError, KeyError):
                continue
        if list(g) != list(genome) and _ok(g, cfg):
            return g
    return list(genome)


def _mutate_parts(genome: list[str], rng: random.Random, cfg: VariationConfig) -> Genome:
    """A free genome with one part mutated, or (``fuse_prob``) a part added or dropped."""
    if cfg.max_parts == 1:  # plain graphs: the same draws as before fusion existed
        return [str(_mutate_free(parse(genome[0]), rng, cfg))]
    r = rng.random()
    if len(genome) < cfg.max_parts and r < cfg.fuse_prob / 2:
        return sorted({*genome, str(_grow_root(rng, cfg, cfg.max_depth - 1))})
    if len(genome) > 1 and r < cfg.fuse_prob:
        return sorted(g for i, g in enumerate(genome) if i != rng.randrange(len(genome)))
    i = rng.randrange(len(genome))
    return sorted({*genome[:i], *genome[i + 1:], str(_mutate_free(parse(genome[i]), rng, cfg))})


def _mix_parts(a: Sequence[str], b: Sequence[str], rng: random.Random) -> tuple[Genome, Genome]:
    """Children of fused parents: each as many parts as a parent, drawn from both parents' parts."""
    pool = sorted({*a, *b})
    return (sorted(rng.sample(pool, min(len(a), len(pool)))), sorted(rng.sample(pool, min(len(b), len(pool)))))


def crossover(a: Sequence[str], b: Sequence[str], rng: random.Random, cfg: VariationConfig) -> tuple[Genome, Genome]:
    """Two valid children (the parents themselves if no valid exchange is found)."""
    for _ in range(cfg.tries):
        if cfg.structure == "free" and (len(a) > 1 or len(b) > 1):
            c1, c2 = _mix_parts(a, b, rng)
        elif cfg.structure == "autoprox_tree":
            take = [rng.random() < 0.5 for _ in a]
            c1 = [x if t else y for x, y, t in zip(a, b, take)]
            c2 = [y if t else x for x, y, t in zip(a, b, take)]
        else:
            ea, eb = parse(a[0]), parse(b[0])
            pa = rng.choice(paths(ea)[1:] or [()])
            want = _layered(get(ea, pa))
            pool = [q for q in paths(eb)[1:] if _layered(get(eb, q)) == want]
            if not pool:
                continue
            pb = rng.choice(pool)
            try:
                c1 = [str(replace(ea, pa, get(eb, pb)))]
                c2 = [str(replace(eb, pb, get(ea, pa)))]
            except (GraphError, KeyError):
                continue
        if _ok(c1, cfg) and _ok(c2, cfg):
            return c1, c2
    return list(a), list(b)


def validate(genome: Sequence[str], cfg: VariationConfig) -> Genome:
    """``genome`` checked against ``cfg`` (a clear error otherwise)."""
    if cfg.structure == "autoprox_tree":
        if len(genome) != 7:
            raise GraphError(f"an autoprox_tree genome has 7 genes, got {len(genome)}: {list(genome)}")
        check(to_expr(genome, cfg))
        return list(genome)
    if not 1 <= len(genome) <= cfg.max_parts:
        raise GraphError(f"a free genome has 1 to max_parts={cfg.max_parts} parts, got {len(genome)}: {list(genome)}")
    for g in genome:
        check(parse(g))
    return sorted(genome)
