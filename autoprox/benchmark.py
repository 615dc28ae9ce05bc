"""ViT-Bench-101 ground truth (and users' own files in the same JSON format)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "vit_bench_101"
SHIPPED = {"autoformer": "autoformer.json", "pit": "pit.json"}
DEFAULT_TARGETS = ("c100_kd", "flower_kd", "chaoyang_kd")
NUM_CLASSES = {"c100": 100, "flower": 102, "chaoyang": 4, "imagenet": 1000}


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

    def split(self, val_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Reproducible (train, validation) index split of the archs."""
        if not 0.0 < val_fraction < 1.0:
            raise BenchmarkError(f"val_fraction must be in (0, 1), got {val_fraction}")
        perm = np.random.default_rng(seed).permutation(len(self))
        n_val = max(1, int(round(val_fraction * len(self))))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def folds(self, k: int = 5, seed: int = 0) -> list[np.ndarray]:
        """``k`` disjoint, reproducible folds covering every arch."""
        if not 2 <= k <= len(self):
            raise BenchmarkError(f"k must be in [2, {len(self)}], got {k}")
        perm = np.random.default_rng(seed).permutation(len(self))
        return [np.sort(f) for f in np.array_split(perm, k)]


def num_classes_of(target: str, default: int = 100) -> int:
    """Number of classes of the dataset a target refers to."""
    return NUM_CLASSES.get(target.split("_")[0], default)


def load_benchmark(space: str, path: str | Path | None = None) -> Benchmark:
    """The shipped benchmark of ``space``, or a user's file via ``path``."""
    if path is None:
        if space not in SHIPPED:
            raise BenchmarkError(f"no shipped benchmark for space {space!r}; "
                                 f"shipped: {sorted(SHIPPED)} (or pass --bench FILE)")
        path = BENCH_DIR / SHIPPED[space]
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"benchmark file not found: {p}")
    try:
        records = json.loads(p.read_text())
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
    return Benchmark(space=space, archs=tuple(archs), accs=tuple(accs), source=str(p))
