"""The package layout is the data flow: module-level imports only go down the stages."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each stage may import (at module level) only from the stages before it.
STAGES = ["primitives", "autoprox.core", "autoprox.spaces", "autoprox.data", "autoprox.stats", "autoprox.proxy",
          "autoprox.parallel", "autoprox.eval", "autoprox.discovery", "autoprox.archsearch", "autoprox.cli"]


def _stage(module: str) -> str | None:
    return next((s for s in sorted(STAGES, key=len, reverse=True) if module == s or module.startswith(s + ".")), None)


def _module_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions: those are deferred on purpose)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


FILES = sorted(p for p in [*ROOT.glob("autoprox/**/*.py"), *ROOT.glob("primitives/*.py")])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_stages(path):
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    here = _stage(mod)
    if here is None:  # autoprox/__init__.py: the lazy top-level API
        return
    for imp in _module_imports(path):
        there = _stage(imp)
        if there is not None:
            assert STAGES.index(there) <= STAGES.index(here), f"{mod} (stage {here}) imports {imp} (stage {there})"


def test_stage_list_covers_every_package():
    pkgs = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("autoprox/*/__init__.py")}
    assert pkgs <= set(STAGES), sorted(pkgs - set(STAGES))


def _all_imports(path: Path, modules: set[str]) -> set[str]:
    """autoprox modules imported anywhere in ``path``: module level, inside functions, for type checking."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n in modules)
    return out


def test_no_import_circles_not_even_inside_functions():
    import networkx as nx
    mods = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in FILES}
    g = nx.DiGraph()
    for mod, path in mods.items():
        g.add_edges_from((mod, m) for m in _all_imports(path, set(mods)) if m != mod)
    assert list(nx.simple_cycles(g)) == []
