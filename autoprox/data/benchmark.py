"""ViT-Bench-101 ground truth (shipped as package data), users' own files in the same JSON
format or in OoD-ViT-NAS's (detected from the content), the archs a run scores, and the
train/validation/test folds it splits them into."""
from __future__ import annotations

import hashlib
import math
import re
from importlib import resources
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from autoprox.core.config import load_json_text
from autoprox.core.errors import AutoproxError
from autoprox.core.io import NotRegularFileError, read_regular_text

SHIPPED = {"autoformer": "autoformer.json", "pit": "pit.json"}  # in the package folder vit_bench_101/
DEFAULT_TARGETS = ("c100_kd", "flower_kd", "chaoyang_kd")  # the KD accuracies
NATIVE_DEFAULT = ("imagenet",)  # an OoD-ViT-NAS file's default target: clean ImageNet top-1


class BenchmarkError(ValueError, AutoproxError):
    """A benchmark file that is missing or malformed, or an unknown target."""


@dataclass(frozen=True)
class Benchmark:
    """Labelled architectures of one search space.

    A *target* is a record key without its ``_acc`` suffix, e.g. ``c100_kd``.
    """

    space: str
    archs: tuple[dict, ...]
    accs: tuple[dict[str, float], ...]
    source: str
    ids: tuple[str, ...] = ()               # record names for messages (an OoD-ViT-NAS file's keys)
    params: tuple[float | None, ...] = ()   # the file's own parameter counts (millions), if it has them

    def record(self, i: int) -> str:
        """How messages name record ``i``."""
        return f"record {self.ids[i]!r}" if self.ids else f"record {i}"

    def __len__(self) -> int:
        return len(self.archs)

    def targets(self) -> list[str]:
        """Targets present in every record."""
        common = set(self.accs[0]) if self.accs else set()
        for a in self.accs[1:]:
            common &= set(a)
        return sorted(common)

    def default_targets(self) -> list[str]:
        have = self.targets()
        chosen = [t for t in DEFAULT_TARGETS if t in have] or [t for t in NATIVE_DEFAULT if t in have]
        return chosen or have

    def take(self, idx: Sequence[int]) -> "Benchmark":
        """The records ``idx`` (in that order) as a benchmark of their own."""
        pick = lambda xs: tuple(xs[i] for i in idx) if xs else ()
        return Benchmark(self.space, pick(self.archs), pick(self.accs), self.source, pick(self.ids),
                         pick(self.params))

    def values(self, target: str, idx: np.ndarray | None = None) -> np.ndarray:
        """Accuracies of ``target`` as a float array (optionally a subset)."""
        if target not in self.targets():
            raise BenchmarkError(f"unknown target {target!r} in {self.source}; "
                                 f"available: {self.targets()}")
        v = np.array([a[target] for a in self.accs], dtype=np.float64)
        return v if idx is None else v[idx]


def load_benchmark(space: str, path: str | Path | None = None) -> Benchmark:
    """The shipped benchmark of ``space``, or a user's file via ``path``."""
    if path is None:
        if space not in SHIPPED:
            raise BenchmarkError(f"no shipped benchmark for space {space!r}; "
                                 f"shipped: {sorted(SHIPPED)} (or pass --bench FILE)")
        res = resources.files("autoprox.data") / "vit_bench_101" / SHIPPED[space]
        text, p = res.read_text(encoding="utf-8"), Path(str(res))
    else:
        p = Path(path)
        try:
            text = read_regular_text(p, "benchmark file")  # a FIFO, device, socket or link loop: refused unopened
        except FileNotFoundError:
            raise BenchmarkError(f"benchmark file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as e:
            if isinstance(e, NotRegularFileError):
                raise
            raise BenchmarkError(f"{p}: cannot be read as text: {e}") from None
    records = load_json_text(text, str(p), BenchmarkError)
    if is_native(records):
        return _native(space, records, str(p))
    if not isinstance(records, list) or not records:
        raise BenchmarkError(f"{p}: expected a non-empty list of records, or OoD-ViT-NAS's mapping of "
                             f"record ids to {{'net_setting', 'performance'}}")
    archs, accs = [], []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("arch"), dict):
            raise BenchmarkError(f"{p}: record {i} has no 'arch' mapping")
        acc = {}
        for k, v in rec.items():
            if k.endswith("_acc"):
                acc[k[: -len("_acc")]] = _number(v, f"{p}: record {i} key {k!r}")
            elif k not in RECORD_META:
                raise BenchmarkError(f"{p}: record {i} has an unknown key {k!r} (a record holds 'arch', "
                                     f"'<target>_acc' values and optionally {', '.join(sorted(RECORD_META - {'arch'}))})")
        if not acc:
            raise BenchmarkError(f"{p}: record {i} has no '<name>_acc' value")
        archs.append(rec["arch"])
        accs.append(acc)
    _same_targets(accs, str(p), [f"record {i}" for i in range(len(accs))])
    return Benchmark(space=space, archs=tuple(archs), accs=tuple(accs), source=str(p))


RECORD_META = frozenset({"arch", "id", "name", "params", "flops"})  # keys of a record besides '<target>_acc'


MAX_ABS = 1e12  # |value| of a record's number: accuracies are percentages or fractions, parameters millions


def _number(v: object, where: str) -> float:
    try:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(float(v))
    except OverflowError:  # an int beyond float range
        ok = False
    if not ok:
        raise BenchmarkError(f"{where} is not a finite number: {str(v)[:40]}")
    if abs(float(v)) > MAX_ABS:  # finite, but its spread overflows a correlation's sums and a plot's axis
        raise BenchmarkError(f"{where} is {float(v):g}, beyond +-{MAX_ABS:g}: an accuracy is a percentage or a "
                             f"fraction (is the file in other units?)")
    return float(v)


def _same_targets(accs: list[dict], source: str, names: list[str]) -> None:
    every = set(accs[0]).union(*accs)
    for name, acc in zip(names, accs):
        if set(acc) != every:
            raise BenchmarkError(f"{source}: {name} has no {sorted(every - set(acc))[0]!r} accuracy that "
                                 f"other records have; give every record the same targets")


def is_native(records: object) -> bool:
    """An OoD-ViT-NAS file: a mapping of record ids to records holding ``net_setting``."""
    return (isinstance(records, dict) and bool(records)
            and all(isinstance(r, dict) and "net_setting" in r for r in records.values()))


def target_name(*parts: str) -> str:
    """``imagenet``, ``imagenet_gaussian_noise_1``: lower case, runs of other characters as ``_``."""
    return "_".join(re.sub(r"[^a-z0-9]+", "_", str(x).lower()).strip("_") for x in parts)


def _native(space: str, records: dict, source: str) -> Benchmark:
    """OoD-ViT-NAS's format: ``net_setting`` becomes the arch, ``performance`` the targets
    (``<dataset>`` for clean, ``<dataset>_<corruption>_<level>`` for each corruption)."""
    archs, accs, params, names = [], [], [], []
    for rid, rec in records.items():
        where = f"{source}: record {rid!r}"
        archs.append(_native_arch(rec["net_setting"], where))
        accs.append(_native_accs(rec.get("performance"), where))
        params.append(_number(rec["params"], f"{where} params") if "params" in rec else None)
        names.append(f"record {rid!r}")
    _same_targets(accs, source, names)
    return Benchmark(space=space, archs=tuple(archs), accs=tuple(accs), source=source,
                     ids=tuple(str(k) for k in records), params=tuple(params))


def _native_arch(ns: object, where: str) -> dict:
    keys = ("layer_num", "embed_dim", "mlp_ratio", "num_heads")
    if not isinstance(ns, dict) or any(k not in ns for k in keys):
        raise BenchmarkError(f"{where}: net_setting must hold {list(keys)}")
    depth = ns["layer_num"]
    for k in keys[1:]:
        if not isinstance(ns[k], list) or len(ns[k]) != depth:
            raise BenchmarkError(f"{where}: net_setting {k} must be a list of layer_num={depth!r} values")
    if len(set(map(repr, ns["embed_dim"]))) != 1:
        raise BenchmarkError(f"{where}: embed_dim differs across layers {ns['embed_dim']}; "
                             f"AutoFormer's spaces use one width")
    return {"hidden_dim": ns["embed_dim"][0], "depth": depth, "mlp_ratio": ns["mlp_ratio"],
            "num_heads": ns["num_heads"]}


def _native_accs(perf: object, where: str) -> dict[str, float]:
    if not isinstance(perf, dict) or not perf:
        raise BenchmarkError(f"{where}: no 'performance' mapping")
    acc = {}
    for dataset, res in perf.items():
        if not isinstance(res, dict) or "clean" not in res:
            raise BenchmarkError(f"{where}: performance {dataset!r} has no 'clean' accuracy")
        acc[target_name(dataset)] = _number(res["clean"], f"{where} {dataset} clean")
        corr = res.get("corruption", {})
        if not isinstance(corr, dict):
            raise BenchmarkError(f"{where}: performance {dataset!r} corruption is not a mapping")
        for kind, levels in corr.items():
            if not isinstance(levels, dict):
                raise BenchmarkError(f"{where}: corruption {kind!r} is not a mapping of level to accuracy")
            for level, v in levels.items():
                acc[target_name(dataset, kind, level)] = _number(v, f"{where} {dataset} {kind} {level}")
    return acc


def subset_order(b: Benchmark) -> list[int]:
    """Record indices by the sha256 of ``"<space>/<record id>"`` (the position for a file without
    ids): the first N are a benchmark's pre-registered subset of N, fixed before any score is seen,
    the same on every machine and whatever the file is called."""
    ids = b.ids or tuple(str(i) for i in range(len(b)))
    keys = [hashlib.sha256(f"{b.space}/{k}".encode()).hexdigest() for k in ids]
    return sorted(range(len(b)), key=keys.__getitem__)


def load_archs(space: str, bench: str | None = None, limit: int | None = None,
               targets: Sequence[str] = (), subset: int | None = None) -> tuple[Benchmark, list[dict], list[str]]:
    """Benchmark, its validated archs (the first ``limit``; with ``subset`` N, the pre-registered
    N of ``subset_order``, in file order) and the chosen targets (default: the KD accuracies
    present); every error names the file and record."""
    from autoprox.spaces import get_space
    b = load_benchmark(space, bench)
    sp = get_space(space)
    if limit is not None and limit < 1:
        raise BenchmarkError(f"limit must be >= 1, got {limit}")
    if subset is not None:
        if subset < 2:
            raise BenchmarkError(f"subset must be >= 2, got {subset}")
        if subset > len(b):
            raise BenchmarkError(f"{b.source}: subset {subset} is more than its {len(b)} records "
                                 "(drop the subset to take them all)")
        b = b.take(sorted(subset_order(b)[:subset]))
    n = len(b) if limit is None else min(limit, len(b))
    archs, seen = [], {}
    for i, a in enumerate(b.archs[:n]):
        try:
            archs.append(sp.validate(a))
        except ValueError as e:
            raise BenchmarkError(f"{b.source}: {b.record(i)}: {e}") from None
        if b.params and b.params[i] is not None:
            _check_params(b, i, space, archs[-1])
        k = sp.key(archs[-1])
        if k in seen:
            raise BenchmarkError(f"{b.source}: {b.record(seen[k])} and {b.record(i)} are the same arch")
        seen[k] = i
    chosen = list(targets) or b.default_targets()
    for t in chosen:
        b.values(t)  # raises a clear error for an unknown target
    return b, archs, chosen


def _check_params(b: Benchmark, i: int, space: str, arch: dict) -> None:
    """The file's parameter count (millions, at 1,000 classes and 224 px) must be the space's:
    a Tiny file read with ViT-Bench-101's ``autoformer`` builder validates but builds other models."""
    from autoprox.spaces import get_space, list_spaces
    def millions(name: str) -> float | None:
        try:
            return round(get_space(name).num_params(arch, num_classes=1000, img_size=224) / 1e6, 6)
        except ValueError:
            return None
    if millions(space) == round(b.params[i], 6):
        return
    fits = [s for s in list_spaces() if millions(s) == round(b.params[i], 6)]
    hint = f"; its count is that of space {fits[0]!r}" if fits else ""
    raise BenchmarkError(f"{b.source}: {b.record(i)}: the file gives {b.params[i]} M params but space "
                         f"{space!r} builds {millions(space)} M{hint}")


def split_cv(n: int, k: int, fold: int, val: float, seed: int) -> dict[str, np.ndarray]:
    """Fold ``fold`` of a seeded ``k``-way partition as the test fold; of the rest, a seeded
    ``val`` fraction (of all ``n``) as validation and the others as train."""
    if not 2 <= k <= n // 3 or not 0 <= fold < k:
        raise ValueError(f"cv needs 2 <= folds <= {n // 3} and 0 <= fold < folds, got folds {k}, fold {fold}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), k)
    test, rest = parts[fold], np.concatenate([p for i, p in enumerate(parts) if i != fold])
    rest = np.random.default_rng(seed + 1).permutation(rest)
    n_val = max(2, round(val * n))
    if len(rest) - n_val < 3:
        raise ValueError(f"{n} archs are too few for {k} folds with val_fraction {val}")
    return {"val": np.sort(rest[:n_val]), "test": np.sort(test), "train": np.sort(rest[n_val:])}


def split3(n: int, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Reproducible disjoint train / val / test index folds of ``n`` archs."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = max(2, round(val * n)), round(test * n)
    if n - n_val - n_test < 3:
        raise ValueError(f"{n} archs are too few for the train/val/test split")
    return {"val": np.sort(perm[:n_val]), "test": np.sort(perm[n_val:n_val + n_test]),
            "train": np.sort(perm[n_val + n_test:])}
