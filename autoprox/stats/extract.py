"""Run statistics passes on one freshly built model of an arch."""
from __future__ import annotations

from dataclasses import asdict
from typing import Collection, Iterable, Mapping

import torch

from autoprox.spaces import SearchSpace
from autoprox.stats.base import ArchStats, StatsConfig
from autoprox.stats.passes import get_pass, list_passes


def extract(space: SearchSpace, arch: Mapping, images: torch.Tensor, labels: torch.Tensor,
            num_classes: int, seed: int, cfg: StatsConfig, device: str | torch.device = "cpu",
            passes: Iterable[str] = ("base",), families: Collection[str] | None = None,
            teacher: object = None) -> ArchStats:
    """Statistics of ``arch`` from the named passes, all run on one freshly built (seeded) model,
    in registry order (a pass that alters weights last); ``families`` (default: all) limits the
    work to what they need (same values); ``teacher`` is the ``TeacherTarget`` a pass may need."""
    wanted = [get_pass(n) for n in passes]  # unknown name: error listing the known passes
    device = torch.device(device)
    res = images.shape[-1]
    model = space.build(arch, num_classes=num_classes, img_size=res, seed=seed,
                        drop_path=cfg.drop_path).to(device)
    imgs, labs = images.to(device), labels.to(device)
    settings = asdict(cfg)
    lean = None if families is None else frozenset(families)
    out = ArchStats()
    for name in list_passes():
        p = next((q for q in wanted if q.name == name), None)
        if p is None:
            continue
        extra = {"teacher": teacher} if "teacher" in p.needs else {}
        t, k, s = p.run(model, imgs, labs, seed, settings, lean, **extra)
        out.tensors.update(t)
        out.kinds.update(k)
        out.scalars.update(s)
    out.scalars.update(_counts(space, arch, num_classes, res))  # what the base pass has always stored
    return out


def _counts(space: SearchSpace, arch: Mapping, num_classes: int, resolution: int) -> dict[str, float]:
    return {"num_params": float(space.num_params(arch, num_classes, resolution)),
            "flops": float(space.flops(arch, num_classes, resolution))}


def meta_stats(space: SearchSpace, arch: Mapping, num_classes: int, resolution: int) -> ArchStats:
    """Data-free statistics without building a model: parameter and FLOP counts and the arch's
    shape (``SearchSpace.arch_scalars``). Computed fresh on every load, never read from the cache
    (``extract`` adds only the counts, so a stored base pass holds what it always did)."""
    return ArchStats(scalars={**_counts(space, arch, num_classes, resolution),
                              **{k: float(v) for k, v in space.arch_scalars(arch).items()}})
