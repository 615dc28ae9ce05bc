"""Export and load proxies: text and LaTeX formulas, YAML graphs, standalone Python."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autoprox.proxy.graph import (DATA_FREE, Expr, GraphError, GraphProxy, op_of, graph_from_mapping, graph_to_mapping,
                    leaves, parse, to_expr, to_graph)
from autoprox.proxy.fuse import FusedProxy, parse_fused
from autoprox.proxy.fusecore import FUSIONS
from autoprox.proxy.python_template import PYTHON as _PYTHON, in_docstring
from autoprox.proxy.surrogate import SURROGATE_KEYS, ArchSurrogate
from autoprox.proxy.genotype import parse_genotype, to_genotype
from autoprox.core.config import read_yaml, unknown_keys
from autoprox.core.io import atomic_write_text
from autoprox.spaces import list_spaces
from autoprox.spaces.base import ARCH_SCALARS
from autoprox.stats.passes import get_pass, passes_for, single_families

FORMATS = ("text", "latex", "yaml", "python")
_PKG = Path(__file__).resolve().parent.parent  # autoprox/
# Torch-only sources embedded, in dependency order, in an exported Python file.
_EMBED = ([_PKG.parent / "primitives" / f for f in ("_tensor.py", "reduce.py", "unary.py", "binary.py", "aggregate.py")]
          + [_PKG / "stats" / f for f in ("layers.py", "collect.py", "jacobian.py", "features.py", "zen.py",
                                          "block_spectra.py", "ntk.py")]
          + [_PKG / "proxy" / f for f in ("evalcore.py", "fusecore.py")])
YAML_KEYS = {"autoprox_proxy", "name", "description", "hash", "expression", "genotype", "formula", "graph",
             "fusion", "parts", "weights", *SURROGATE_KEYS}
AnyProxy = GraphProxy | FusedProxy | ArchSurrogate


def formula(e: Expr, latex: bool = False) -> str:
    """The formula of ``e`` in plain text or LaTeX, from the ops' own templates."""
    if e.is_leaf:
        return r"\mathrm{" + e.head.replace("_", r"\_") + "}" if latex else e.head
    op = op_of(e.head)
    return (op.latex if latex else op.text).format(*(formula(a, latex) for a in e.args))


def proxy_formula(p: AnyProxy, latex: bool = False) -> str:
    """The formula of a proxy; a fused one as ``fusion(part; part)``."""
    if isinstance(p, ArchSurrogate):
        return p.formula(latex)
    if not p.fused:
        return formula(p.parts[0].expr, latex)
    if p.weights:  # parts already in canonical order, each with its weight
        dot = r" \cdot " if latex else " * "
        return f"{p.fusion}(" + "; ".join(f"{w:.4g}{dot}rank({formula(q.expr, latex)})"
                                          for q, w in zip(p.parts, p.weights)) + ")"
    return f"{p.fusion}(" + "; ".join(formula(q.expr, latex) for q in sorted(p.parts, key=lambda q: str(q.expr))) + ")"


def to_yaml(p: AnyProxy) -> str:
    """The proxy file (``load_proxy`` reads it back); a fused proxy lists its parts."""
    if isinstance(p, ArchSurrogate):
        doc = {"autoprox_proxy": 1, "name": p.name, "description": p.description, "hash": p.hash}
        return yaml.safe_dump(doc | p.to_doc() | {"formula": p.formula()}, sort_keys=False, allow_unicode=True,
                              width=120, default_flow_style=None)
    if p.fused:
        parts = p.parts if p.weights else sorted(p.parts, key=lambda q: str(q.expr))
        doc = {"autoprox_proxy": 1, "name": p.name, "description": p.description, "hash": p.hash,
               "fusion": p.fusion, "parts": [str(q.expr) for q in parts]}
        if p.weights:
            doc["weights"] = list(p.weights)
        return yaml.safe_dump(doc | {"formula": proxy_formula(p)}, sort_keys=False, allow_unicode=True, width=120)
    doc: dict[str, Any] = {"autoprox_proxy": 1, "name": p.name, "description": p.description,
                           "hash": p.hash, "expression": str(p.expr)}
    g = to_genotype(p.expr)
    if g:
        doc["genotype"] = g
    doc["formula"] = formula(p.expr)
    doc["graph"] = graph_to_mapping(to_graph(p.expr))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def load_proxy(path: str | Path) -> AnyProxy:
    """A proxy file: its ``graph`` (else ``expression``, else ``genotype``, else ``columns`` (an arch
    surrogate), else ``fusion`` and ``parts``); hash checked."""
    p = Path(path)
    doc = read_yaml(p, "proxy file", GraphError)
    if not isinstance(doc, dict):
        raise GraphError(f"{p}: expected a mapping with 'graph', 'expression' or 'genotype'")
    unknown = unknown_keys(doc, YAML_KEYS)
    if unknown:
        raise GraphError(f"{p}: unknown key(s) {unknown}; allowed: {sorted(YAML_KEYS)}")
    if (set(SURROGATE_KEYS) - {"parts", "space"}) & set(doc):  # columns, intercept or part_weights
        return _load_surrogate(p, doc)
    if "parts" in doc and "graph" not in doc:
        return _load_fused(p, doc)
    if not {"graph", "expression", "genotype"} & set(doc):
        raise GraphError(f"{p}: needs one of 'graph', 'expression', 'genotype'")
    try:
        if "graph" in doc:
            expr = to_expr(graph_from_mapping(doc["graph"]))
        elif "expression" in doc:
            expr = parse(str(doc["expression"]))
        else:
            expr = parse_genotype(str(doc["genotype"]))
    except (GraphError, ValueError, KeyError, TypeError) as e:  # the error names the file
        raise GraphError(f"{p}: {e.args[0] if e.args else e}") from None
    return _checked(p, doc, GraphProxy(str(doc.get("name") or p.stem), expr, str(doc.get("description") or "")))


def _load_surrogate(p: Path, doc: dict) -> ArchSurrogate:
    """An arch surrogate file (``columns``, ``intercept``, ``parts``, ``part_weights``); hash checked."""
    mixed = sorted({"graph", "expression", "genotype", "fusion", "weights"} & set(doc))
    if mixed:
        raise GraphError(f"{p}: an arch surrogate (columns, intercept, part_weights) takes no {mixed}")
    try:
        s = ArchSurrogate.from_doc(doc, str(doc.get("name") or p.stem), str(doc.get("description") or ""))
    except (GraphError, ValueError, KeyError, TypeError) as e:  # the error names the file
        raise GraphError(f"{p}: {e.args[0] if e.args else e}") from None
    return _checked(p, doc, s)  # type: ignore[return-value]


def _checked(p: Path, doc: dict, proxy: AnyProxy) -> AnyProxy:
    """``proxy`` if it hashes to the file's recorded ``hash`` (or the file records none)."""
    if "hash" in doc and str(doc["hash"]) != proxy.hash:
        raise GraphError(f"{p}: the {'graph' if isinstance(proxy, GraphProxy) else 'proxy'} hashes to {proxy.hash}, not the "
                         f"recorded {doc['hash']}; it was edited: delete the 'hash' line to accept it")
    return proxy


def _load_fused(p: Path, doc: dict) -> FusedProxy:
    """A fused proxy file (``fusion`` and ``parts``); hash checked."""
    parts = doc["parts"] if isinstance(doc["parts"], list) else []
    weights = doc.get("weights")
    if weights is not None and not (isinstance(weights, list) and all(isinstance(w, (int, float)) and not
                                                                      isinstance(w, bool) for w in weights)):
        raise GraphError(f"{p}: 'weights' must be a list of numbers, one per part")
    head = str(doc.get("fusion", "rank_sum")) + (f"({', '.join(repr(float(w)) for w in weights)})" if weights else "")
    try:
        fused = parse_fused(f"{head}[{' | '.join(map(str, parts))}]",
                            str(doc.get("name") or p.stem), str(doc.get("description") or ""))
    except (GraphError, ValueError, KeyError) as e:  # the error names the file
        raise GraphError(f"{p}: {e.args[0] if e.args else e}") from None
    if fused is None or len(parts) < 2:
        raise GraphError(f"{p}: 'parts' must list at least two expressions and 'fusion' name a fusion")
    return _checked(p, doc, fused)  # type: ignore[return-value]


def _tree_literal(e: Expr) -> str:
    if e.is_leaf:
        return repr(e.head)
    return f"({e.head!r}, {', '.join(_tree_literal(a) for a in e.args)},)"


def _embedded_source() -> str:
    parts = []
    for f in _EMBED:
        lines = [ln for ln in f.read_text(encoding="utf-8").splitlines()
                 if not re.match(r"\s*(from primitives|import primitives|from __future__|from autoprox\.stats\.)", ln)]
        parts.append(f"# ---- from {f.parent.name}/{f.name}\n" + "\n".join(lines))
    return "\n\n".join(parts)


def to_python(p: AnyProxy) -> str:
    """A standalone file (torch only) that scores torch ViTs with this proxy; a fused proxy's
    ``score_population`` fuses its parts across the models it is given; an arch surrogate's file
    scores arch dicts."""
    if isinstance(p, ArchSurrogate):
        return p.to_python()
    parts = list(p.parts) if p.fused else [p]
    if p.fused and p.fusion not in FUSIONS:
        raise ValueError(f"fusion {p.fusion!r} has no torch-only form to embed; export text, latex or yaml")
    used = set().union(*(leaves(q.expr) for q in parts))
    passes = passes_for(used - DATA_FREE)
    if any(get_pass(n).needs for n in passes):
        raise ValueError(f"proxy {p.name!r} needs a ConvNet teacher (teacher_gap): the standalone "
                         f"Python export does not embed one; use text, latex or yaml")
    calls = ", ".join(f"{n!r}: {get_pass(n).run.__name__}" for n in passes)
    groups = {n: op_of(n).group for q in parts for n in _heads(q.expr)}
    return _PYTHON.format(
        name_doc=in_docstring(repr(p.name)), hash=p.hash, formula_doc=in_docstring(proxy_formula(p)),
        sources=_embedded_source(),
        name_r=repr(p.name), trees="[" + ", ".join(_tree_literal(q.expr) for q in parts) + "]",
        fusion=repr(p.fusion if p.fused else None), weights=repr(tuple(p.weights) if p.fused else ()),
        aggregate=repr(sorted(n for n, g in groups.items() if g == "aggregate")),
        single=repr(tuple(single_families())), calls=calls,
        families=repr(tuple(sorted(used - DATA_FREE))), shape=repr(tuple(sorted(used & set(ARCH_SCALARS)))),
        needs_flops=repr("flops" in used), spaces=repr(tuple(list_spaces())))


def _heads(e: Expr):
    if not e.is_leaf:
        yield e.head
        for a in e.args:
            yield from _heads(a)


def export(p: AnyProxy, fmt: str) -> str:
    """``p`` as ``fmt`` (text, latex, yaml or python); fused proxies in every format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    if fmt in ("text", "latex"):
        return proxy_formula(p, latex=fmt == "latex") + "\n"
    return to_yaml(p) if fmt == "yaml" else to_python(p)


def write_export(p: AnyProxy, fmt: str, out: str | Path | None) -> str:
    text = export(p, fmt)
    if out:
        atomic_write_text(out, text)
    return text

