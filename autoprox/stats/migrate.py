"""``autoprox cache migrate``: re-key cache entries written by autoprox < 0.2.

Before 0.2 a pass's key held a hash of its source code, so any edit (even a move) orphaned
every entry; 0.2 keys hold the pass's explicit version (``stats.passes``). The values of
every pass are unchanged, so old entries are renamed, not recomputed. The old code hashes
depended on torch's version: they are known here for the pinned torch 2.13.0 only. Old entries
hold version-1 values, so only passes still at version 1 are moved; the others (``base`` and
``hessian`` since compact statistics, the folded-in ``grad_groups``) are recomputed.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import torch

from autoprox.core.io import atomic_write_bytes
from autoprox.data.benchmark import load_archs
from autoprox.stats.cache import cache_key, read_header, with_meta
from autoprox.stats.passes import get_pass, list_passes
from autoprox.stats.provider import ScoringConfig, StatsProvider
from autoprox.stats.teacher import checksum

LEGACY_VERSION = 1  # the values every pass had before 0.2
LEGACY_CODE = {"2.13.0": {"base": "ee451c691d5c2818", "hessian": "ada5623bba315f21",
                          "grad_groups": "c4f76a1890a25d7e", "teacher": "b2a19c2ef687fad3"}}


def legacy_key(provider: StatsProvider, arch: dict, pass_name: str) -> str:
    """The key autoprox < 0.2 gave this pass of ``arch`` under the provider's settings."""
    c = provider.cfg
    code = LEGACY_CODE[torch.__version__.split("+")[0]][pass_name]
    if pass_name == "teacher":
        code += ":" + checksum(c.teacher)  # type: ignore[arg-type]
    fields = {k: v for k, v in asdict(c.stats).items() if pass_name == "grad_groups" or k != "grad_groups"}
    return cache_key({"space": provider.space_name, "arch": provider.space.key(arch),
                      "batch": provider.batch.fingerprint, "classes": c.batch.num_classes, "seed": c.seed,
                      "cfg": fields, "device": torch.device(c.device).type, "code": code, "pass": pass_name})


def migrate(space: str, scoring: ScoringConfig, bench: str | None = None) -> int:
    """Re-key the old entries of ``space``'s benchmark archs under ``scoring``; their count."""
    version = torch.__version__.split("+")[0]
    if version not in LEGACY_CODE:
        raise ValueError(f"old cache keys are known for torch {', '.join(LEGACY_CODE)} only, not {version}: "
                         f"recompute with 'autoprox stats'")
    provider = StatsProvider(space, replace(scoring, use_cache=True))
    passes = [p for p in LEGACY_CODE[version] if p in list_passes() and get_pass(p).version == LEGACY_VERSION
              and (p != "teacher" or scoring.teacher)]
    _, archs, _ = load_archs(space, bench)
    moved = 0
    for arch in archs:
        for p in passes:
            old, new = provider.cache.path(space, legacy_key(provider, arch, p)), provider.key(arch, p)
            if not old.is_file() or provider.cache.path(space, new).exists():
                continue
            buf = old.read_bytes()
            got = read_header(buf)
            data = None if got is None else with_meta(buf, {**got[0].get("meta", {}), "key": new})
            if data is not None:
                atomic_write_bytes(provider.cache.path(space, new), data)
                old.unlink()
                moved += 1
    return moved
