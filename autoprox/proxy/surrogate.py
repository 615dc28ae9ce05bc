"""Arch surrogates: proxies that read the arch's own choices, layer by layer.

An ``ArchSurrogate`` scores an arch as ``intercept`` plus the weight of every (field, layer, value)
column the arch has (its one-hot encoding, ``one_hot``) plus, when it has ``parts``, each part's
weight times the part's rank / n among the archs scored together (``fusecore.weighted_rank``: then
it is fused), plus, when it has ``trees``, the leaves its regression trees reach from those same inputs
(``trees``). ``autoprox fit --model surrogate``, ``zc-surrogate`` and ``zc-trees`` write one. It needs
the archs themselves: the backends hand ``combine`` the archs they scored (``reads_arch``).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from autoprox.proxy import fusecore, trees as treelib
from autoprox.proxy.graph import GraphProxy
from autoprox.proxy.python_template import SURROGATE_PYTHON, in_docstring

Column = tuple  # (field, layer, value): layer None for a field that is one value per arch
SURROGATE_KEYS = ("intercept", "columns", "parts", "part_weights", "space", "trees")


def one_hot_fields(archs: Sequence[dict]) -> dict[tuple, list]:
    """Every (field, layer) of the archs with the values seen there (a list shorter than another
    has the value None at the missing layers): a surrogate's columns."""
    cols: dict[tuple, set] = {}
    longest: dict[str, int] = {}
    for a in archs:
        for k, v in a.items():
            if isinstance(v, (list, tuple)):
                longest[k] = max(longest.get(k, 0), len(v))
    for a in archs:
        for k, v in a.items():
            if isinstance(v, (list, tuple)):
                for i in range(longest[k]):
                    cols.setdefault((k, i), set()).add(v[i] if i < len(v) else None)
            else:
                cols.setdefault((k,), set()).add(v)
    return {c: sorted(vals, key=repr) for c, vals in cols.items()}


def one_hot(archs: Sequence[dict], fields: Mapping[tuple, list]) -> np.ndarray:
    """(archs x columns) 0/1 encoding; a value the fields never saw sets no column of its field."""
    out = []
    for a in archs:
        row = []
        for col, vals in fields.items():
            v = a.get(col[0])
            if len(col) == 2:
                v = v[col[1]] if isinstance(v, (list, tuple)) and col[1] < len(v) else None
            row += [float(v == u) for u in vals]
        out.append(row)
    return np.array(out, dtype=np.float64).reshape(len(archs), sum(len(v) for v in fields.values()))


def columns_of(fields: Mapping[tuple, list]) -> list[Column]:
    """The (field, layer, value) columns of ``one_hot(archs, fields)``, in its order."""
    return [(c[0], c[1] if len(c) == 2 else None, v) for c, vals in fields.items() for v in vals]


def fields_of(columns: Sequence[Column]) -> dict[tuple, list]:
    """``one_hot_fields``' mapping for ``columns`` (the inverse of ``columns_of``)."""
    out: dict[tuple, list] = {}
    for field, layer, value in columns:
        out.setdefault((field,) if layer is None else (field, layer), []).append(value)
    return out


def _finite(x: float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an integer beyond any float
        return False


def _scalar(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float, str)) and not isinstance(v, bool)
                         and not (isinstance(v, float) and not np.isfinite(v)))


@dataclass(frozen=True)
class ArchSurrogate:
    """``intercept`` + the ``weights`` of the arch's ``columns`` + ``part_weights`` x rank / n of the
    ``parts``; an empty ``name`` is its hash. ``space``: the search space whose archs it was fitted
    on (its columns are that space's choices), refused on any other (``check_space``); "": any.
    ``trees``: regression trees (``proxy.trees``) over the columns, then the parts, in this order."""

    name: str
    columns: tuple[Column, ...]
    weights: tuple[float, ...]
    intercept: float = 0.0
    parts: tuple[GraphProxy, ...] = ()
    part_weights: tuple[float, ...] = ()
    description: str = ""
    space: str = ""
    trees: tuple = ()

    reads_arch = True  # combine needs the archs scored

    def __post_init__(self) -> None:
        cols = tuple(tuple(c) for c in self.columns)
        if len(cols) != len(self.weights) or len(self.parts) != len(self.part_weights):
            raise ValueError(f"surrogate {self.name!r}: one weight per column ({len(cols)}, got "
                             f"{len(self.weights)}) and per part ({len(self.parts)}, got {len(self.part_weights)})")
        if not cols and not self.parts:
            raise ValueError(f"surrogate {self.name!r} needs at least one column or part")
        for c in cols:
            if (len(c) != 3 or not isinstance(c[0], str) or not (c[1] is None or (isinstance(c[1], int)
                    and not isinstance(c[1], bool) and c[1] >= 0)) or not _scalar(c[2])):
                raise ValueError(f"surrogate {self.name!r}: a column is [field, layer (an index >= 0 or "
                                 f"null), value (a number, text or null)], got {list(c)!r}")
        if len(set(cols)) != len(cols):
            raise ValueError(f"surrogate {self.name!r}: a column is listed twice")
        if not isinstance(self.space, str):
            raise ValueError(f"surrogate {self.name!r}: 'space' must be a search space's name, got {self.space!r}")
        if not np.all(np.isfinite([self.intercept, *self.weights, *self.part_weights])):
            raise ValueError(f"surrogate {self.name!r}: the intercept and weights must be finite")
        trees = treelib.check_trees(self.trees, len(cols) + len(self.parts), self.name)
        order = sorted(range(len(cols)), key=lambda i: repr(cols[i]))
        porder = sorted(range(len(self.parts)), key=lambda i: (str(self.parts[i].expr), float(self.part_weights[i])))
        new_index = np.argsort([*order, *(len(cols) + i for i in porder)]).tolist()  # old input -> its new place
        object.__setattr__(self, "trees", treelib.remap(trees, new_index))
        object.__setattr__(self, "columns", tuple(cols[i] for i in order))
        object.__setattr__(self, "weights", tuple(float(self.weights[i]) for i in order))
        object.__setattr__(self, "parts", tuple(self.parts[i] for i in porder))
        object.__setattr__(self, "part_weights", tuple(float(self.part_weights[i]) for i in porder))
        object.__setattr__(self, "intercept", float(self.intercept))
        if not self.name:
            object.__setattr__(self, "name", f"surrogate-{self.hash}")

    @property
    def fused(self) -> bool:
        """Whether its score of an arch depends on the other archs (it ranks parts among them)."""
        return bool(self.parts)

    @property
    def families(self) -> frozenset[str]:
        return frozenset().union(*(p.families for p in self.parts))

    @property
    def text(self) -> str:
        """Canonical text (every digit of every weight): what the hash covers."""
        cols = "; ".join(f"{f!r}{'' if l is None else f'[{l}]'}={v!r}: {w!r}"
                         for (f, l, v), w in zip(self.columns, self.weights))
        parts = "; ".join(f"rank({p.expr}): {w!r}" for p, w in zip(self.parts, self.part_weights))
        where = f" on {self.space!r}" if self.space else ""
        trees = f" + trees[{treelib.text(self.trees)}]" if self.trees else ""
        return f"surrogate({self.intercept!r})[{cols}" + (f" | {parts}" if parts else "") + "]" + trees + where

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def negated(self) -> "ArchSurrogate":
        """The same surrogate ranking archs the other way round."""
        return ArchSurrogate(self.name, self.columns, tuple(-w for w in self.weights), -self.intercept,
                             self.parts, tuple(-w for w in self.part_weights), self.description, self.space,
                             treelib.negate(self.trees))

    def check_space(self, space: str | None) -> None:
        """``ValueError`` (one line) when scoring archs of ``space`` (None: not known) with a surrogate
        fitted on another space's archs: their choices would meet columns of other values."""
        if self.space and space is not None and space != self.space:
            raise ValueError(f"proxy {self.name!r} was fitted on {self.space} archs and reads their choices; "
                             f"it cannot score {space} archs: fit one on {space} (autoprox fit --space {space})")

    def combine(self, matrix: np.ndarray, archs: Sequence[dict] | None = None) -> np.ndarray:
        """(parts x archs) part scores and the archs -> (archs,) scores; NaN in any part -> NaN."""
        if archs is None:
            raise ValueError(f"proxy {self.name!r} reads the archs' choices: score it with the archs "
                             f"(bench, search, or score_population(..., archs=..., space=...))")
        m = np.asarray(matrix, dtype=np.float64).reshape(len(self.parts), len(archs))
        out = np.full(len(archs), self.intercept)
        onehot = one_hot(archs, fields_of(self.columns))
        for col, w in zip(onehot.T, self.weights):  # column by column, as the
            out = out + col * w  # export adds them: one arch gets the same bits alone or among any others
        if self.parts:
            out = out + fusecore.weighted_rank(torch.as_tensor(m), self.part_weights).numpy()
        if self.trees:
            ranked = fusecore.rank_fractions(torch.as_tensor(m)).numpy().T if self.parts else np.zeros((len(archs), 0))
            out = out + treelib.predict(self.trees, np.concatenate([onehot, ranked], axis=1))
        return out

    def to_doc(self) -> dict:
        """The proxy file's surrogate keys (``from_doc`` reads them back)."""
        doc = {"intercept": self.intercept,
               "columns": [[f, l, v, w] for (f, l, v), w in zip(self.columns, self.weights)]}
        if self.parts:
            doc |= {"parts": [str(p.expr) for p in self.parts], "part_weights": list(self.part_weights)}
        doc |= {"trees": [[list(n) for n in t] for t in self.trees]} if self.trees else {}
        return doc | ({"space": self.space} if self.space else {})

    @classmethod
    def from_doc(cls, doc: Mapping, name: str, description: str) -> "ArchSurrogate":
        """A surrogate from a proxy file's keys; ``ValueError`` naming the key that is wrong."""
        rows, parts, pw = doc.get("columns") or [], doc.get("parts") or [], doc.get("part_weights") or []
        if not (isinstance(rows, list) and all(isinstance(r, list) and len(r) == 4 for r in rows)):
            raise ValueError("'columns' must list [field, layer, value, weight] rows")
        if not (isinstance(parts, list) and isinstance(pw, list)):
            raise ValueError("'parts' and 'part_weights' must be lists")
        numbers = [doc.get("intercept", 0.0), *(r[3] for r in rows), *pw]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
            raise ValueError("'intercept', each column's weight and 'part_weights' must be numbers")
        if not all(_finite(x) for x in numbers):
            raise ValueError("'intercept', each column's weight and 'part_weights' must be finite")
        space = doc.get("space") or ""
        if not isinstance(space, str):
            raise ValueError(f"'space' must be a search space's name, got {space!r}")
        graphs = tuple(GraphProxy.from_text(f"part{i}", str(p)) for i, p in enumerate(parts))
        return cls(name, tuple((r[0], r[1], r[2]) for r in rows), tuple(float(r[3]) for r in rows),
                   float(doc.get("intercept", 0.0)), graphs, tuple(float(w) for w in pw), description, space,
                   doc.get("trees") or ())

    def formula(self, latex: bool = False) -> str:
        """``b + w * [field[layer] = value] + ... + w * rank(part)``, the largest weights first."""
        def col(f: str, l: Any, v: Any) -> str:  # [field[layer] = value]; [no field[layer]]: the arch lacks it
            name = f if l is None else f"{f}[{l}]"
            name = r"\mathrm{" + name.replace("_", r"\_") + "}" if latex else name
            return f"[no {name}]" if v is None else f"[{name} = {v}]"
        dot = r" \cdot " if latex else " * "
        terms = [(w, col(*c)) for c, w in zip(self.columns, self.weights) if w != 0]
        terms += [(w, f"rank({p.expr})") for p, w in zip(self.parts, self.part_weights) if w != 0]
        terms.sort(key=lambda t: -abs(t[0]))
        le = r"\le" if latex else "<="
        trees = (f" + trees({len(self.trees)} of depth {le} {max(map(treelib.depth, self.trees))} over the "
                 f"{'columns and parts' if self.parts else 'columns'})") if self.trees else ""
        return (f"{self.intercept:.4g}" + "".join(f" {'-' if w < 0 else '+'} {abs(w):.4g}{dot}{t}" for w, t in terms)
                + trees)

    def to_python(self) -> str:
        """A standalone Python file (no imports) scoring arch dicts; only without parts."""
        if self.parts or self.trees:
            why = "ranks zoo parts among the archs scored" if self.parts else "adds regression trees"
            raise ValueError(f"surrogate {self.name!r} {why}: its standalone Python form is not available; "
                             f"export text, latex or yaml")
        rows = ",\n".join(f"    ({f!r}, {l!r}, {v!r}, {w!r})" for (f, l, v), w in zip(self.columns, self.weights))
        return SURROGATE_PYTHON.format(name_doc=in_docstring(repr(self.name)), hash=self.hash,
                                       intercept=repr(self.intercept), rows=rows)

