"""Run statistics passes on one freshly built model of an arch."""
from __future__ import annotations

from dataclasses import asdict
from typing import Collection, Iterable, Mapping

import torch

from autoprox.spaces import SearchSpace
from autoprox.stats.base import ArchStats, StatsConfig
from autoprox.stats.passes import get_pass, run_groups


def extract(space: SearchSpace, arch: Mapping, images: torch.Tensor, labels: torch.Tensor,
            num_classes: int, seed: int, cfg: StatsConfig, device: str | torch.device = "cpu",
            passes: Iterable[str] = ("base",), families: Collection[str] | None = None,
            teacher: object = None) -> ArchStats:
    """Statistics of ``arch`` from the named passes, all run on one freshly built (seeded) model,
    in registry order (a pass that alters weights last); ``families`` (default: all) limits the
    work to what they need (same values); ``teacher`` is the ``TeacherTarget`` a pass may need."""
    names = [get_pass(n).name for n in passes]  # unknown name: error listing the known passes
    device = torch.device(device)
    res = images.shape[-1]
    model = space.build(arch, num_classes=num_classes, img_size=res, seed=seed,
                        drop_path=cfg.drop_path).to(device)
    lean = None if families is None else frozenset(families)
    out = run_passes(model, images.to(device), labels.to(device), seed, cfg, names, lean, teacher)
    out.scalars.update(_counts(space, arch, num_classes, res))  # what the base pass has always stored
    return out


def run_passes(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, cfg: StatsConfig,
               passes: Collection[str], families: Collection[str] | None = None, teacher: object = None) -> ArchStats:
    """The named passes on one model, in registry order (a pass that alters the weights runs last;
    passes that share a forward run it once, ``run_groups``);
    ``families`` (None: all) limits each to what they need; ``teacher``: for a pass that needs one."""
    settings = asdict(cfg)
    out = ArchStats()
    for names, run in run_groups(passes, families):
        extra = {"teacher": teacher} if "teacher" in get_pass(names[0]).needs else {}
        out.merge(ArchStats(*run(model, images, labels, seed, settings, families, **extra)))
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
