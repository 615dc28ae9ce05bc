"""The one proxy batch of a run: images + labels shared by every architecture.

Sources:
- ``synthetic`` (default, offline): procedurally generated class-conditional images,
  computed from the seed; nothing is read or downloaded.
- ``cifar100``: the CIFAR-100 python ``train`` file (``path``: the file or its folder).
- ``folder``: image files under ``path`` (sub-folders are classes, ImageFolder style).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from autoprox.core.config import ConfigError, check_ranges
from autoprox.core.io import NotRegularFileError, check_readable, open_regular

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


class BatchError(ConfigError):
    """A batch source that cannot be read."""


@dataclass(frozen=True)
class BatchConfig:
    source: Literal["synthetic", "cifar100", "folder"] = "synthetic"
    path: str | None = None
    size: int = 32
    resolution: int = 224
    num_classes: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_ranges(self, "batch", {"size": (2, None), "resolution": (16, None), "num_classes": (2, None), "seed": (0, None)},
                     BatchError)  # resolution: at least one 16-px patch
        if self.source != "synthetic" and not self.path:
            raise BatchError(f"batch source {self.source!r} needs a path")


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # (B, 3, R, R) float32, normalised
    labels: torch.Tensor  # (B,) int64
    fingerprint: str      # hash of the exact tensors, part of every cache key


def _check_fits(cfg: BatchConfig) -> None:
    """``BatchError`` with the figures when the batch alone would not fit this machine's memory."""
    need = cfg.size * 3 * cfg.resolution ** 2 * 4
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no such figure on this platform
        return
    if need > have:
        raise BatchError(f"a batch of {cfg.size} images at {cfg.resolution} px needs {need / 2 ** 30:,.0f} GiB "
                         f"before any model runs; this machine has {have / 2 ** 30:,.0f} GiB")


def make_batch(cfg: BatchConfig) -> Batch:
    """Build the batch described by ``cfg`` (deterministic in ``cfg``)."""
    loaders = {"synthetic": _synthetic, "cifar100": _cifar100, "folder": _folder}
    if cfg.source not in loaders:
        raise BatchError(f"unknown batch source {cfg.source!r}; use one of {sorted(loaders)}")
    _check_fits(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reductions (the synthetic batch's mean/std) sum in one fixed order,
    try:                      # so the batch and every cache key are the same on any machine
        images, labels = loaders[cfg.source](cfg)
    finally:
        torch.set_num_threads(threads)
    images, labels = images.contiguous().float(), labels.long().contiguous()
    h = hashlib.sha256(images.numpy().data)  # the buffers themselves: no copy of the batch
    h.update(labels.numpy().data)
    return Batch(images, labels, h.hexdigest()[:16])


def _synthetic(cfg: BatchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes (smooth colour fields + an oriented grating) plus per-image noise."""
    g = torch.Generator().manual_seed(cfg.seed)
    r, n, k = cfg.resolution, cfg.size, cfg.num_classes
    labels = torch.randint(0, k, (n,), generator=g)
    coarse = torch.randn(k, 3, 4, 4, generator=g)
    angle = torch.rand(k, generator=g) * torch.pi
    freq = 2 + 10 * torch.rand(k, generator=g)
    used, labels_used = torch.unique(labels, return_inverse=True)  # prototypes of the drawn classes only
    coarse, angle, freq = coarse[used], angle[used], freq[used]     # (the same values, a fraction of the memory)
    protos = F.interpolate(coarse, size=(r, r), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    phase = (xx * angle.cos()[:, None, None] + yy * angle.sin()[:, None, None]) * freq[:, None, None]
    protos = protos + 0.5 * torch.sin(torch.pi * phase)[:, None]
    contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    blobs = F.interpolate(torch.randn(n, 3, 8, 8, generator=g), size=(r, r), mode="bilinear",
                          align_corners=False)
    x = contrast * protos[labels_used] + 0.5 * blobs + 0.3 * torch.randn(n, 3, r, r, generator=g)
    shifts = torch.randint(-r // 8, r // 8 + 1, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(1, 2)) for img, s in zip(x, shifts)])
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std, labels


def _normalise(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class _DataOnly(pickle.Unpickler):
    """Unpickles plain data only (containers, strings, numbers, numpy arrays): a crafted file cannot
    name any other callable, so loading it runs no code."""

    ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
               for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a data file has no reason to")
        return super().find_class(module, name)


def _cifar100(cfg: BatchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    p = Path(cfg.path)
    p = p / "train" if p.is_dir() else p
    try:
        f = open_regular(p, "CIFAR-100 train file")  # a FIFO, device, socket or link loop: refused unopened
    except FileNotFoundError:
        raise BatchError(f"CIFAR-100 train file not found: {p} (expected cifar-100-python/train)") from None
    except NotRegularFileError as e:
        raise BatchError(str(e)) from None
    try:
        with f:
            d = _DataOnly(f, encoding="bytes").load()
        data, fine = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"fine_labels"])
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise BatchError(f"{p} is not a CIFAR-100 python pickle: {e}") from None
    if len(data) < cfg.size:
        raise BatchError(f"{p} holds {len(data)} images, fewer than batch size {cfg.size}")
    idx = np.sort(np.random.default_rng(cfg.seed).choice(len(data), cfg.size, replace=False))
    x = torch.from_numpy(data[idx].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    x = F.interpolate(x, size=(cfg.resolution,) * 2, mode="bilinear", align_corners=False)
    return _normalise(x, CIFAR_MEAN, CIFAR_STD), torch.from_numpy(fine[idx] % cfg.num_classes)


def _folder(cfg: BatchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image  # pillow ships with matplotlib; only this source needs it

    root = Path(cfg.path)
    if not root.is_dir():
        raise BatchError(f"image folder not found: {root}")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    for f in files:  # every image, before any is opened: a FIFO would hang the run, a device never end
        try:
            check_readable(f, "image")
        except (NotRegularFileError, FileNotFoundError) as e:  # a dangling link: not found
            raise BatchError(f"{e}; remove it from {root} or choose another --batch-path") from None
    if len(files) < cfg.size:
        raise BatchError(f"{root} holds {len(files)} images, fewer than batch size {cfg.size}")
    classes = sorted({f.parent.relative_to(root).as_posix() for f in files})
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(files), cfg.size, replace=False))
    imgs, labels = [], []
    for i in pick:
        try:
            with open_regular(files[i], "image") as f:
                img = Image.open(f).convert("RGB")
        except Exception as e:  # noqa: BLE001
            raise BatchError(f"cannot read image {files[i]}: {e}") from None
        imgs.append(_resize_crop(img, cfg.resolution))
        labels.append(classes.index(files[i].parent.relative_to(root).as_posix()) % cfg.num_classes)
    return _normalise(torch.stack(imgs), IMAGENET_MEAN, IMAGENET_STD), torch.tensor(labels)


def _resize_crop(img, res: int) -> torch.Tensor:
    """Shorter side to ``res`` then a centre crop, as a (3, res, res) float tensor in [0, 1]."""
    w, h = img.size
    s = res / min(w, h)
    img = img.resize((max(res, round(w * s)), max(res, round(h * s))))
    w, h = img.size
    left, top = (w - res) // 2, (h - res) // 2
    arr = np.asarray(img.crop((left, top, left + res, top + res)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)
