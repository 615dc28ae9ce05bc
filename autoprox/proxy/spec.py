"""The one proxy resolver: a zoo name, a proxy file, an expression or a genotype -> a proxy.

Every verb (bench, search, evolve seeds, export, the Python API) resolves proxies here, on
the driver. What every proxy offers (``Proxy``): ``parts``, graph proxies scored per arch,
and ``combine``, which turns their (parts x archs) scores into the proxy's (archs,) scores:
the one row for a graph proxy, a fusion across archs for a fused one (``fused`` is True); an
arch surrogate (``reads_arch``) also reads the archs. Workers only ever receive the parts'
expression strings (``autoprox.parallel``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, Union

from autoprox.proxy.genotype import parse_genotype
from autoprox.proxy.graph import GraphError, GraphProxy, parse
from autoprox.proxy.fuse import FusedProxy, parse_fused
from autoprox.proxy.surrogate import ArchSurrogate
from autoprox.proxy.zoo import get_proxy, has_proxy, unknown_proxy


class Proxy(Protocol):
    """What scoring, reports and exports need of a proxy."""

    name: str
    description: str
    fused: bool

    @property
    def text(self) -> str: ...

    def negated(self) -> "Proxy": ...

    @property
    def parts(self) -> tuple[GraphProxy, ...]: ...

    @property
    def families(self) -> frozenset[str]: ...

    @property
    def hash(self) -> str: ...

    reads_arch: bool  # whether ``combine`` needs the archs scored (an arch surrogate)

    def combine(self, matrix: Any, archs: Any = None) -> Any: ...


ProxyLike = Union[str, GraphProxy, FusedProxy, ArchSurrogate]


def resolve(spec: ProxyLike, name: str | None = None) -> Proxy:
    """The proxy ``spec`` names: a proxy object (returned as is), a zoo name, a proxy file
    (``.yaml``/``.yml``, or any existing file), a genotype (``INPUT:(...)TREE:(...)BINARY:(...)``)
    or an expression such as ``agg_sum(sum(abs(weight)))``. ``name`` names an expression proxy
    (default: the expression). Anything else raises ``ValueError`` with the nearest zoo name."""
    if not isinstance(spec, str):
        return spec  # type: ignore[return-value]
    text = spec.strip()
    if has_proxy(text):
        return get_proxy(text)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or _is_file(path):
        from autoprox.proxy.export import load_proxy  # export reads files; it imports this module's peers
        return load_proxy(path)
    fused = parse_fused(text, name)
    if fused is not None:
        return fused
    try:
        expr = parse_genotype(text) if text.startswith("INPUT:") else parse(text)
    except GraphError as e:
        if "(" in text:  # meant as an expression: say what is wrong with it
            raise ValueError(f"proxy {spec!r}: {e}") from None
        raise ValueError(f"{unknown_proxy(text)}; or give a proxy file or an expression") from None
    return GraphProxy(name or str(expr), expr, "")


def resolve_all(specs: Sequence[ProxyLike]) -> list[Proxy]:
    """Each spec resolved, the same proxy given twice kept once; two different proxies under one name
    (say two proxy files whose ``name`` is the same) raise ``ValueError``: reports key scores by name."""
    out: dict[str, Proxy] = {}
    for spec in specs:
        p = resolve(spec)
        first = out.setdefault(p.name, p)
        if first.hash != p.hash:
            raise ValueError(f"two different proxies are named {p.name!r}: give each proxy file its own 'name'")
    return list(out.values())


def check_space(proxies: Sequence[Proxy], space: str | None) -> None:
    """``ValueError`` (one line) for a proxy fitted on another space's archs than ``space``'s (an
    arch surrogate records its space; None: the archs' space is not known)."""
    for p in proxies:
        if isinstance(p, ArchSurrogate):
            p.check_space(space)


def _is_file(path: Path) -> bool:
    """Whether ``path`` names an existing file; False for text no file system accepts as a name
    (a long expression is longer than a file name may be)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def resolve_graph(spec: ProxyLike, what: str = "proxy") -> GraphProxy:
    """``resolve``, refusing fused proxies (for what needs one graph: export, evolution seeds)."""
    p = resolve(spec)
    if isinstance(p, ArchSurrogate):
        raise ValueError(f"{what} {p.name!r} is an arch surrogate (it reads the arch's choices), not a graph")
    if p.fused:
        parts = "; ".join(str(q.expr) for q in p.parts)
        raise ValueError(f"{what} {p.name!r} fuses its parts across archs and is not one graph; "
                         f"use a part instead: {parts}")
    return p.parts[0]
