"""ViT-Bench-101 ground truth (shipped as package data), users' own files in the same JSON
format, the archs a run scores, and the train/validation/test folds it splits them into."""
from __future__ import annotations

import json
import math
from importlib import resources
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

SHIPPED = {"autoformer": "autoformer.json", "pit": "pit.json"}  # in the package folder vit_bench_101/
DEFAULT_TARGETS = ("c100_kd", "flower_kd", "chaoyang_kd")  # the KD accuracies


class BenchmarkError(ValueError):
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
        chosen = [t for t in DEFAULT_TARGETS if t in have]
        return chosen or have

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
        if not p.is_file():
            raise BenchmarkError(f"benchmark file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BenchmarkError(f"{p}: cannot be read as text: {e}") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(records, list) or not records:
        raise BenchmarkError(f"{p}: expected a non-empty list of records")
    archs, accs = [], []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("arch"), dict):
            raise BenchmarkError(f"{p}: record {i} has no 'arch' mapping")
        acc = {}
        for k, v in rec.items():
            if k.endswith("_acc"):
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise BenchmarkError(f"{p}: record {i} key {k!r} is not a finite number")
                acc[k[: -len("_acc")]] = float(v)
        if not acc:
            raise BenchmarkError(f"{p}: record {i} has no '<name>_acc' value")
        archs.append(rec["arch"])
        accs.append(acc)
    every = set(accs[0]).union(*accs)
    for i, acc in enumerate(accs):
        if set(acc) != every:
            raise BenchmarkError(f"{p}: record {i} has no {sorted(every - set(acc))[0]!r}_acc value that "
                                 f"other records have; give every record the same targets")
    return Benchmark(space=space, archs=tuple(archs), accs=tuple(accs), source=str(p))


def load_archs(space: str, bench: str | None = None, limit: int | None = None,
               targets: Sequence[str] = ()) -> tuple[Benchmark, list[dict], list[str]]:
    """Benchmark, its validated archs (the first ``limit``) and the chosen targets (default:
    the KD accuracies present); every error names the file and record."""
    from autoprox.spaces import get_space
    b = load_benchmark(space, bench)
    sp = get_space(space)
    if limit is not None and limit < 1:
        raise BenchmarkError(f"limit must be >= 1, got {limit}")
    n = len(b) if limit is None else min(limit, len(b))
    archs, seen = [], {}
    for i, a in enumerate(b.archs[:n]):
        try:
            archs.append(sp.validate(a))
        except ValueError as e:
            raise BenchmarkError(f"{b.source}: record {i}: {e}") from None
        k = sp.key(archs[-1])
        if k in seen:
            raise BenchmarkError(f"{b.source}: records {seen[k]} and {i} are the same arch")
        seen[k] = i
    chosen = list(targets) or b.default_targets()
    for t in chosen:
        b.values(t)  # raises a clear error for an unknown target
    return b, archs, chosen


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
