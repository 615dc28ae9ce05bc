"""Search spaces declared in YAML over the builders that exist: ``--space my_space.yaml`` wherever a
space is accepted (``get_space`` reads the file).

    name: tiny-narrow                # the space's name: its cache folder and output names
    builder: autoformer-supernet     # autoformer-supernet (AutoFormer's supernet blocks, heads x 64)
                                     # or autoformer (ViT-Bench-101's, attention width = hidden_dim)
    hidden_dim: [192, 216]           # embed dim choices
    depth: [12, 13]                  # depth choices
    mlp_ratio: [3.5, 4.0]            # per-layer choices
    num_heads: [3, 4]                # per-layer choices

Archs are written as in the builder's space (``hidden_dim``, ``depth``, per-layer ``mlp_ratio`` and
``num_heads`` lists); sampling, mutation, counts and the torch builder are the builder's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoprox.core.config import ConfigError, from_dict, read_yaml
from autoprox.spaces.autoformer import AutoFormerSpace, LayerwiseSpace
from autoprox.spaces.supernet import SupernetSpace

BUILDERS: dict[str, type[LayerwiseSpace]] = {"autoformer": AutoFormerSpace, "autoformer-supernet": SupernetSpace}
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SpaceDecl:
    name: str
    builder: str
    hidden_dim: tuple[int, ...]
    depth: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    num_heads: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.builder not in BUILDERS:
            raise ConfigError(f"builder {self.builder!r} is not one of {sorted(BUILDERS)}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"name {self.name!r} must be a plain name (it names the cache folder)")
        for field in ("hidden_dim", "depth", "mlp_ratio", "num_heads"):
            values = getattr(self, field)
            if not values or any(v <= 0 for v in values) or len(set(values)) != len(values):
                raise ConfigError(f"{field} must list distinct positive choices, got {list(values)}")
        if self.builder == "autoformer":  # attention width = hidden_dim: heads must divide it
            bad = [(d, h) for d in self.hidden_dim for h in self.num_heads if d % h]
            if bad:
                raise ConfigError(f"builder autoformer splits hidden_dim across heads: {bad[0][0]} is not "
                                  f"divisible by {bad[0][1]} heads")


def is_space_file(name: str) -> bool:
    return name.endswith(SUFFIXES)


_LOADED: dict[tuple[str, float], LayerwiseSpace] = {}


def load_space(path: str | Path) -> LayerwiseSpace:
    """The space declared in ``path`` (one instance per file version); one-line errors naming the file."""
    p = Path(path)
    data = read_yaml(p, "space file")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a space file is a mapping of name, builder and the four choice lists")
    decl = from_dict(SpaceDecl, data, where=p.name)
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _LOADED:
        base = BUILDERS[decl.builder]
        cls = type(f"Declared[{decl.name}]", (base,), {
            "DIMS": decl.hidden_dim, "DEPTHS": decl.depth, "RATIOS": decl.mlp_ratio, "HEADS": decl.num_heads,
            "name": decl.name, "__doc__": f"declared in {p.name}: {decl.builder} builder, embed "
                                          f"{'/'.join(map(str, decl.hidden_dim))}, depth "
                                          f"{'/'.join(map(str, decl.depth))}"})
        _LOADED[key] = cls()
    return _LOADED[key]
