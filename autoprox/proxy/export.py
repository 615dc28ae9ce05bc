"""Export and load proxies: text and LaTeX formulas, YAML graphs, standalone Python."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autoprox.proxy.graph import (DATA_FREE, Expr, GraphError, GraphProxy, _op, graph_from_mapping, graph_to_mapping,
                    leaves, parse, to_expr, to_graph)
from autoprox.proxy.fuse import FusedProxy, parse_fused
from autoprox.proxy.genotype import parse_genotype, to_genotype
from autoprox.core.config import read_yaml
from autoprox.core.io import atomic_write_text
from autoprox.spaces import list_spaces
from autoprox.stats.passes import get_pass, matrix_families, passes_for

FORMATS = ("text", "latex", "yaml", "python")
_PKG = Path(__file__).resolve().parent.parent  # autoprox/
# Torch-only sources embedded, in dependency order, in an exported Python file.
_EMBED = [_PKG.parent / "primitives" / f for f in ("_tensor.py", "reduce.py", "unary.py", "binary.py",
                                                     "aggregate.py")] + [_PKG / "stats" / "collect.py",
                                                                         _PKG / "proxy" / "evalcore.py"]
YAML_KEYS = {"autoprox_proxy", "name", "description", "hash", "expression", "genotype", "formula", "graph",
             "fusion", "parts"}


def formula(e: Expr, latex: bool = False) -> str:
    """The formula of ``e`` in plain text or LaTeX, from the ops' own templates."""
    if e.is_leaf:
        return r"\mathrm{" + e.head.replace("_", r"\_") + "}" if latex else e.head
    op = _op(e.head)
    return (op.latex if latex else op.text).format(*(formula(a, latex) for a in e.args))


def proxy_formula(p: GraphProxy | FusedProxy, latex: bool = False) -> str:
    """The formula of a proxy; a fused one as ``fusion(part; part)``."""
    if not p.fused:
        return formula(p.parts[0].expr, latex)
    return f"{p.fusion}(" + "; ".join(formula(q.expr, latex) for q in sorted(p.parts, key=lambda q: str(q.expr))) + ")"


def to_yaml(p: GraphProxy | FusedProxy) -> str:
    """The proxy file (``load_proxy`` reads it back); a fused proxy lists its parts."""
    if p.fused:
        parts = sorted(p.parts, key=lambda q: str(q.expr))
        return yaml.safe_dump({"autoprox_proxy": 1, "name": p.name, "description": p.description, "hash": p.hash,
                               "fusion": p.fusion, "parts": [str(q.expr) for q in parts],
                               "formula": proxy_formula(p)},
                              sort_keys=False, allow_unicode=True, width=120)
    doc: dict[str, Any] = {"autoprox_proxy": 1, "name": p.name, "description": p.description,
                           "hash": p.hash, "expression": str(p.expr)}
    g = to_genotype(p.expr)
    if g:
        doc["genotype"] = g
    doc["formula"] = formula(p.expr)
    doc["graph"] = graph_to_mapping(to_graph(p.expr))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def load_proxy(path: str | Path) -> GraphProxy | FusedProxy:
    """A proxy file: its ``graph`` (else ``expression``, else ``genotype``, else ``fusion`` and
    ``parts``); hash checked."""
    p = Path(path)
    doc = read_yaml(p, "proxy file", GraphError)
    if not isinstance(doc, dict):
        raise GraphError(f"{p}: expected a mapping with 'graph', 'expression' or 'genotype'")
    unknown = sorted(set(doc) - YAML_KEYS)
    if unknown:
        raise GraphError(f"{p}: unknown key(s) {unknown}; allowed: {sorted(YAML_KEYS)}")
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
    proxy = GraphProxy(str(doc.get("name") or p.stem), expr, str(doc.get("description") or ""))
    if "hash" in doc and str(doc["hash"]) != proxy.hash:
        raise GraphError(f"{p}: the graph hashes to {proxy.hash}, not the recorded {doc['hash']}; "
                         f"it was edited: delete the 'hash' line to accept it")
    return proxy


def _load_fused(p: Path, doc: dict) -> FusedProxy:
    """A fused proxy file (``fusion`` and ``parts``); hash checked."""
    parts = doc["parts"] if isinstance(doc["parts"], list) else []
    try:
        fused = parse_fused(f"{doc.get('fusion', 'rank_sum')}[{' | '.join(map(str, parts))}]",
                            str(doc.get("name") or p.stem), str(doc.get("description") or ""))
    except (GraphError, ValueError, KeyError) as e:  # the error names the file
        raise GraphError(f"{p}: {e.args[0] if e.args else e}") from None
    if fused is None or len(parts) < 2:
        raise GraphError(f"{p}: 'parts' must list at least two expressions and 'fusion' name a fusion")
    if "hash" in doc and str(doc["hash"]) != fused.hash:
        raise GraphError(f"{p}: the proxy hashes to {fused.hash}, not the recorded {doc['hash']}; "
                         f"it was edited: delete the 'hash' line to accept it")
    return fused


def _tree_literal(e: Expr) -> str:
    if e.is_leaf:
        return repr(e.head)
    return f"({e.head!r}, {', '.join(_tree_literal(a) for a in e.args)},)"


def _embedded_source() -> str:
    parts = []
    for f in _EMBED:
        lines = [ln for ln in f.read_text(encoding="utf-8").splitlines()
                 if not re.match(r"\s*(from primitives|import primitives|from __future__)", ln)]
        parts.append(f"# ---- from {f.parent.name}/{f.name}\n" + "\n".join(lines))
    return "\n\n".join(parts)


def to_python(p: GraphProxy) -> str:
    """A standalone file (torch only) that scores a torch ViT with this proxy."""
    passes = passes_for(leaves(p.expr) - DATA_FREE)
    if any(get_pass(n).needs for n in passes):
        raise ValueError(f"proxy {p.name!r} needs a ConvNet teacher (teacher_gap): the standalone "
                         f"Python export does not embed one; use text, latex or yaml")
    calls = ", ".join(f"{n!r}: {get_pass(n).run.__name__}" for n in passes)
    ops = {e for e in _heads(p.expr)}
    groups = {n: _op(n).group for n in ops}
    spaces = tuple(list_spaces())
    return f'''"""autoprox proxy {p.name!r} (hash {p.hash}), exported as a standalone file.

{formula(p.expr)}

Usage: score(model, images, labels, seed=0) -> float. Needs only torch. From a shell,
`python3 THIS_FILE.py --space pit '{{"base_dim": 16, ...}}'` scores one arch of an autoprox
space on autoprox's default batch (that needs autoprox installed). The model is
run in train mode with cross-entropy on the batch, then its weights are replaced
by |w| for the SynFlow-style pass: pass a freshly built model.
Generated by `autoprox export --format python`; the code below is autoprox's own.
"""
from __future__ import annotations

_OPS = {{}}


def register_op(name, **kw):
    def deco(fn):
        _OPS[name] = fn
        return fn
    return deco


{_embedded_source()}


# ---- the proxy
NAME = {p.name!r}
EXPRESSION = {str(p.expr)!r}
TREE = {_tree_literal(p.expr)}
AGGREGATE = {sorted(n for n, g in groups.items() if g == "aggregate")!r}
SINGLE = {tuple(matrix_families())!r}


def evaluate(node, tensors, kinds, scalars, memo):
    key = repr(node)
    if key not in memo:
        if isinstance(node, str):
            memo[key] = leaf_value(node, tensors, kinds, scalars, SINGLE)
        else:
            args = [evaluate(a, tensors, kinds, scalars, memo) for a in node[1:]]
            memo[key] = apply_op(_OPS[node[0]], node[0] in AGGREGATE, args)
    return memo[key]


PASSES = {{{calls}}}  # in run order: a pass that alters the weights comes last
FAMILIES = {tuple(sorted(leaves(p.expr) - DATA_FREE))!r}


def score(model, images, labels, seed=0, samples=4, tokens=8, flops=None, grad_groups=4, arch_scalars=None,
          weight_rows=32):
    """The proxy's score of ``model`` on (images, labels); ``arch_scalars``: the arch's
    depth, width, heads, mlp_ratio (autoprox's SearchSpace.arch_scalars), for a proxy that reads them."""
    num_params = float(sum(p.numel() for p in model.parameters()))
    settings = {{"act_samples": samples, "act_tokens": tokens, "grad_groups": grad_groups, "weight_rows": weight_rows}}
    tensors, kinds, scalars = {{}}, {{}}, {{}}
    for run in PASSES.values():
        t, k, s = run(model, images, labels, seed, settings, FAMILIES)
        tensors.update(t)
        kinds.update(k)
        scalars.update(s)
    scalars["num_params"] = num_params
    if flops is not None:
        scalars["flops"] = float(flops)
    scalars.update({{k: float(v) for k, v in (arch_scalars or {{}}).items()}})
    return float(evaluate(TREE, tensors, kinds, scalars, {{}}).float().mean())


def main(argv=None):
    """Score autoprox's default proxy batch on one arch of an autoprox space (needs autoprox)."""
    import argparse
    import json
    ap = argparse.ArgumentParser(description=f"score an arch with proxy {{NAME}} on autoprox's default batch",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("arch", help="the arch as JSON, e.g. one 'arch' of a search's result.yaml")
    ap.add_argument("--space", required=True, choices={spaces!r}, help="the arch's search space")
    ap.add_argument("--seed", type=int, default=0, help="statistics seed: model init and stochastic layers")
    args = ap.parse_args(argv)
    try:
        import autoprox
        from autoprox.spaces import get_space
        from autoprox.stats.base import StatsConfig
        from autoprox.stats.batch import BatchConfig
    except ImportError:
        ap.error("building a space's model and the default batch needs autoprox (pip install autoprox)")
    try:
        arch = get_space(args.space).validate(json.loads(args.arch))
    except ValueError as e:
        ap.error(f"arch: {{e}}")
    images, labels = autoprox.default_batch()
    space, st, classes, res = get_space(args.space), StatsConfig(), BatchConfig().num_classes, images.shape[-1]
    model = space.build(arch, num_classes=classes, img_size=res, seed=args.seed, drop_path=st.drop_path)
    value = score(model, images, labels, seed=args.seed, samples=st.act_samples, tokens=st.act_tokens,
                  flops=space.flops(arch, classes, res), grad_groups=st.grad_groups, weight_rows=st.weight_rows)
    print(value)


if __name__ == "__main__":
    main()
'''


def _heads(e: Expr):
    if not e.is_leaf:
        yield e.head
        for a in e.args:
            yield from _heads(a)


def export(p: GraphProxy, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    if fmt == "text":
        return formula(p.expr) + "\n"
    if fmt == "latex":
        return formula(p.expr, latex=True) + "\n"
    return to_yaml(p) if fmt == "yaml" else to_python(p)


def write_export(p: GraphProxy, fmt: str, out: str | Path | None) -> str:
    text = export(p, fmt)
    if out:
        atomic_write_text(out, text)
    return text

