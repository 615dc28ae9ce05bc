"""The ``Op`` record, the op registry and the published-name aliases."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from primitives.registry import Registry

F = TypeVar("F", bound=Callable)

GROUPS = ("unary", "binary", "reduce", "aggregate")
OUT_KINDS = ("scalar", "tensor", "vector")

# Spellings used by published Auto-Prox genotypes -> registry names.
ALIASES: dict[str, str] = {
    "element_wise_log": "log",
    "element_wise_abslog": "abslog",
    "element_wise_abs": "abs",
    "element_wise_pow": "square",
    "element_wise_exp": "exp",
    "normalize": "standardize",
    "element_wise_relu": "relu",
    "element_wise_invert": "invert",
    "element_wise_normalized_sum": "normalized_sum",
    "element_wise_sqrt": "sqrt",
    "element_wise_revert": "negate",
}


@dataclass(frozen=True)
class Op:
    """One primitive: its torch function plus what printers and samplers need."""

    name: str
    group: str            # "unary" | "binary" | "reduce" | "aggregate"
    arity: int            # 1 or 2 (aggregate: 1)
    out_kind: str         # "scalar" | "tensor" | "vector"
    fn: Callable
    text: str             # plain-text template with {0} / {1} placeholders
    latex: str            # LaTeX template with {0} / {1} placeholders
    doc: str              # one line: what it computes, edge cases included
    weight: float = 1.0   # sampling weight for evolution
    commutative: bool = False  # binary ops: f(a, b) == f(b, a); the canonical form sorts operands
    batched: Callable | None = None  # fn over stacks of operands (see ``register_op``); None: one at a time


_OPS: Registry[Op] = Registry("op")
ELEMENTWISE = "elementwise"  # ``batched=ELEMENTWISE``: fn itself works on a stack (it maps elements)


def register_op(
    name: str,
    *,
    group: str,
    arity: int,
    out_kind: str,
    text: str,
    latex: str,
    doc: str | None = None,
    weight: float = 1.0,
    commutative: bool = False,
    batched: Callable | str | None = None,
) -> Callable[[F], F]:
    """Decorator registering a torch function as op ``name``; ``doc`` defaults to its docstring.

    ``batched`` is the op over *stacks*: called with one ``(n, *shape)`` tensor per operand (n
    operands of one non-empty shape each; for an aggregation, see ``primitives.aggregate``), it
    returns the ``(n, *out)`` stack of ``fn``'s n results, or None where those would not share a
    shape (the caller then applies ``fn`` one operand at a time). ``ELEMENTWISE``: ``fn`` itself."""

    def deco(fn: F) -> F:
        if isinstance(batched, str) and batched != ELEMENTWISE:
            raise ValueError(f"op {name!r}: batched must be a function, ELEMENTWISE or None, got {batched!r}")
        stacked = fn if batched == ELEMENTWISE else batched
        op = Op(name, group, arity, out_kind, fn, text, latex, doc or (fn.__doc__ or "").strip(), float(weight),
                commutative, stacked)
        _validate(op)
        _OPS.add(name, op)
        return fn

    return deco


def _validate(op: Op) -> None:
    """Raise ValueError if ``op`` breaks the registry's rules."""
    if op.group not in GROUPS:
        raise ValueError(f"op {op.name!r}: group {op.group!r} is not one of {GROUPS}")
    if op.arity != (2 if op.group == "binary" else 1):
        raise ValueError(f"op {op.name!r}: arity {op.arity} does not fit group {op.group!r}")
    if op.out_kind not in OUT_KINDS:
        raise ValueError(f"op {op.name!r}: out_kind {op.out_kind!r} is not one of {OUT_KINDS}")
    if op.name in ALIASES:
        raise ValueError(f"op {op.name!r} is an alias of {ALIASES[op.name]!r}")
    if not op.doc or "\n" in op.doc:
        raise ValueError(f"op {op.name!r}: doc must be one non-empty line")
    if op.weight < 0:
        raise ValueError(f"op {op.name!r}: negative weight {op.weight}")
    args = [f"ARG{i}" for i in range(op.arity)]
    for template in (op.text, op.latex):
        filled = template.format(*args)
        if not all(arg in filled for arg in args):
            raise ValueError(f"op {op.name!r}: template {template!r} misses a placeholder")


def get_op(name: str) -> Op:
    """The op registered as ``name`` (or as the alias target); unknown -> ``KeyError`` subclass."""
    return _OPS.get(ALIASES.get(name, name))


def list_ops(group: str | None = None) -> list[str]:
    """Sorted names of the registered ops, optionally only those of ``group``."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown op group {group!r}; known: {', '.join(GROUPS)}")
    return [n for n in _OPS.names() if group is None or _OPS.get(n).group == group]
