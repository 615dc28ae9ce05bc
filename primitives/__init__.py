"""Primitive operations from which zero-cost proxies are composed.

Importing the package registers every op; look them up with ``get_op`` / ``list_ops``.
"""
from primitives.base import ALIASES, GROUPS, OUT_KINDS, Op, get_op, list_ops, register_op
from primitives import reduce, unary, binary, aggregate  # noqa: F401  (registration)
from primitives.binary import BINARY_ORDER
from primitives.unary import UNARY_ORDER

__all__ = [
    "ALIASES", "BINARY_ORDER", "GROUPS", "OUT_KINDS", "UNARY_ORDER",
    "Op", "get_op", "list_ops", "register_op",
]
