"""TVT's teacher-aware statistic: the attention-map gap between a ViT and a ConvNet teacher.

``teacher_gap`` = mean((A(F_s) - A(F_t))^2), A(F) = the per-image L2-normalised channel
mean of F^2 (a spatial map, flattened). F_s is the output of the student's last
transformer block (the last module whose class is named ``Block`` to run), its patch
tokens reshaped to (B, C, h, h) (leading cls/extra tokens dropped: h = isqrt(N - 1), the
last h*h tokens kept); F_t is the teacher's last-stage map on the proxy batch resized to
``TEACHER_RES`` px (bilinear, antialiased). Both feature maps are resized (bilinear) to the
larger of the two spatial sizes before A is taken, as in attention-transfer losses.

The teacher is user-supplied (``ScoringConfig.teacher``, ``--teacher PATH``): a TorchScript
file (``torch.jit.save``), whose ``forward`` must return the (B, C, H, W) last-stage map
(loaded modules take no hooks), or a whole pickled ``nn.Module`` (``torch.save(model)``),
whose last-stage map is the last 4-D output of any module during its forward (global
pooling layers excluded). Pickles run code when loaded: one is read with
``weights_only=False`` only because the user named the file explicitly. The teacher runs
once per batch per ``StatsProvider`` (eval mode, no grad); the student once per arch
(train mode, seeded, no grad, like the other statistics passes).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from autoprox.core.io import check_readable, open_regular, read_regular
from autoprox.stats.layers import seeded


TEACHER_RES = 32
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
NO_TEACHER = ("statistic 'teacher_gap' (proxy tvt) needs a ConvNet teacher: pass --teacher CHECKPOINT "
              "(ScoringConfig.teacher; a TorchScript file or torch.save(model))")


def attention_map(f: torch.Tensor) -> torch.Tensor:
    """A(F): (B, C, H, W) -> (B, H*W), the L2-normalised channel mean of F^2 per image."""
    return F.normalize(f.float().pow(2).mean(1).flatten(1), dim=1)


def resize_map(f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``f`` resized (bilinear) to ``size``; unchanged when already that size."""
    if tuple(f.shape[-2:]) == tuple(size):
        return f.float()
    return F.interpolate(f.float(), size=size, mode="bilinear", align_corners=False)


def joint_size(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """The larger of two maps' spatial sizes, per dimension."""
    return max(a.shape[-2], b.shape[-2]), max(a.shape[-1], b.shape[-1])


def teacher_gap(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """mean((A(F_s) - A(F_t))^2), both maps resized to the larger spatial size first (0-d)."""
    return TeacherTarget(f_t).gap(f_s)


def student_map(tokens: torch.Tensor) -> torch.Tensor:
    """Block output tokens (B, N, C) as a (B, C, h, h) map of the last h*h = isqrt(N-1)^2 tokens."""
    if tokens.dim() == 4:
        return tokens
    b, n, c = tokens.shape
    h = math.isqrt(n - 1) if n > 1 else 0
    if h < 1:
        raise ValueError(f"cannot form a token map from {n} token(s)")
    return tokens[:, n - h * h:].transpose(1, 2).reshape(b, c, h, h)


class TeacherTarget:
    """The teacher's last-stage map of one batch; A of it memoised per target size."""

    def __init__(self, features: torch.Tensor) -> None:
        if features.dim() != 4:
            raise ValueError(f"teacher map must be (B, C, H, W), got shape {tuple(features.shape)}")
        self.features = features.detach().float()
        self._maps: dict[tuple[int, int], torch.Tensor] = {}

    def gap(self, f_s: torch.Tensor) -> torch.Tensor:
        """teacher_gap of the student map ``f_s`` (same batch) against this teacher (0-d)."""
        if f_s.shape[0] != self.features.shape[0]:
            raise ValueError(f"student batch {f_s.shape[0]} != teacher batch {self.features.shape[0]}")
        size = joint_size(f_s, self.features)
        if size not in self._maps:
            self._maps[size] = attention_map(resize_map(self.features, size))
        a_t = self._maps[size].to(f_s.device)
        return (attention_map(resize_map(f_s.detach(), size)) - a_t).pow(2).mean()


def checksum(path: str | Path) -> str:
    """sha256 of the teacher file (part of the teacher pass's cache key)."""
    p = Path(path)
    check_readable(p, "teacher checkpoint")  # not found, or a FIFO, device, socket, link loop: refused unopened
    h = hashlib.sha256()
    with open_regular(p, "teacher checkpoint") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_torchscript(p: io.BytesIO) -> bool:
    """A ``torch.jit.save`` archive: a zip holding the module's ``code/``."""
    p.seek(0)
    if not zipfile.is_zipfile(p):
        return False
    with zipfile.ZipFile(p) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


TRUST_ENV = "AUTOPROX_TRUST_PICKLE"  # =1: pickled teacher modules (and TorchScript beyond torch's ops) may load
TORCH_OPS = frozenset({"aten", "prim", "quantized"})  # operator namespaces of torch itself


def _check_torchscript(p: Path, data: io.BytesIO) -> None:
    """A TorchScript file runs no Python, but its code may call operators that other libraries
    registered in this process (``ops.<namespace>.<op>``) or custom classes (``torch.classes``):
    such a file loads only when the user trusts it."""
    foreign = set()
    with zipfile.ZipFile(data) as z:
        for name in z.namelist():
            if "/code/" in f"/{name}" and name.endswith(".py"):
                code = z.read(name).decode("utf-8", "replace")
                foreign |= {f"ops.{ns}" for ns in re.findall(r"\bops\.(\w+)\.", code) if ns not in TORCH_OPS}
                foreign |= {"torch.classes"} if re.search(r"\btorch\.classes\.", code) else set()
    if foreign and os.environ.get(TRUST_ENV) != "1":
        raise PermissionError(f"teacher checkpoint {p} is TorchScript calling {', '.join(sorted(foreign))}, outside "
                              f"torch's own operators: it could run code another library registered; if you trust "
                              f"it, set {TRUST_ENV}=1")


def _unpickle(p: Path, data: io.BytesIO, device: str | torch.device) -> object:
    """The pickle read as data only; a whole pickled module only when the user said they trust it."""
    try:
        data.seek(0)
        return torch.load(data, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():  # not a pickle torch can read at all
            raise
        if os.environ.get(TRUST_ENV) != "1":
            raise PermissionError(f"teacher checkpoint {p} is a pickled module, and loading one can run code from "
                                  f"the file: save it as TorchScript (torch.jit.save(torch.jit.script(model), "
                                  f"path)) or, if you trust it, set {TRUST_ENV}=1") from None
    data.seek(0)
    return torch.load(data, map_location=device, weights_only=False)


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A TorchScript file, else a pickled ``nn.Module``. A pickle is first read as data only
    (``weights_only=True``); a whole pickled module can run code when loaded, so it is read only
    when ``AUTOPROX_TRUST_PICKLE=1`` says the user trusts the file."""
    p = Path(path)
    data = io.BytesIO(read_regular(p, "teacher checkpoint"))  # read once: a FIFO or device is refused unopened
    try:
        if _is_torchscript(data):
            _check_torchscript(p, data)
            with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; reading it is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                data.seek(0)
                return torch.jit.load(data, map_location=device)
        m = _unpickle(p, data, device)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as e:
        raise ValueError(f"cannot read teacher checkpoint {p} (TorchScript or a pickled nn.Module; "
                         f"a pickled module's class must be importable): {e}") from None
    if not isinstance(m, nn.Module):
        raise ValueError(f"teacher checkpoint {p} holds a {type(m).__name__}, not a model: save the whole "
                         f"module (torch.save(model)) or a TorchScript file (torch.jit.save)")
    return m


def teacher_features(teacher: nn.Module, images: torch.Tensor, where: str = "teacher") -> torch.Tensor:
    """The teacher's last-stage (B, C, H, W) map on ``images`` (eval mode, no grad)."""
    teacher.eval()
    scripted = isinstance(teacher, torch.jit.ScriptModule)
    seen: dict[str, torch.Tensor] = {}  # only the latest 4-D output is kept

    def keep(m: nn.Module, i: tuple, o: object) -> None:
        if torch.is_tensor(o) and o.dim() == 4:
            seen["map"] = o
    handles = [] if scripted else [m.register_forward_hook(keep) for m in teacher.modules()
                                   if not isinstance(m, _GLOBAL_POOLS)]
    try:
        with torch.no_grad():
            out = teacher(images)
    finally:
        for h in handles:
            h.remove()
    if scripted:
        if not (torch.is_tensor(out) and out.dim() == 4):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"{where}: a TorchScript teacher's forward must return its last-stage "
                             f"feature map (B, C, H, W) (scripted modules take no hooks); got {got}")
        return out.detach().float()
    if not seen:
        raise ValueError(f"{where}: no module of the teacher produced a 4-D (B, C, H, W) output")
    return seen["map"].detach().float()


def teacher_target(path: str | Path, images: torch.Tensor, device: str | torch.device = "cpu") -> TeacherTarget:
    """Load the teacher and run it once on ``images`` resized to ``TEACHER_RES`` px."""
    device = torch.device(device)
    x = images.to(device).float()
    if x.shape[-1] != TEACHER_RES or x.shape[-2] != TEACHER_RES:
        x = F.interpolate(x, size=(TEACHER_RES, TEACHER_RES), mode="bilinear", align_corners=False,
                          antialias=True)
    return TeacherTarget(teacher_features(load_teacher(path, device), x, str(path)))


def student_features(model: nn.Module, images: torch.Tensor, seed: int) -> torch.Tensor:
    """The last-run ``Block``'s output as a map: one seeded train-mode forward, no grad."""
    last: dict[str, torch.Tensor] = {}  # only the latest block output is kept
    blocks = [m for m in model.modules() if type(m).__name__ == "Block"]
    if not blocks:
        raise ValueError("the student has no module named 'Block' to take its last tokens from")
    handles = [m.register_forward_hook(lambda m, i, o: last.__setitem__("out", o)) for m in blocks]
    model.train()
    device = images.device
    try:
        with torch.no_grad(), seeded(seed, device):
            model(images)
    finally:
        for h in handles:
            h.remove()
    return student_map(last["out"])


def teacher_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, settings: dict,
                 families: object = None, teacher: TeacherTarget | None = None) -> tuple[dict, dict, dict]:
    """The ``teacher`` pass: ``teacher_gap`` of ``model`` (fresh weights) against the teacher's map."""
    if teacher is None:
        raise ValueError(NO_TEACHER)
    gap = teacher.gap(student_features(model, images, seed))
    return {"teacher_gap": [gap.detach().float().cpu()]}, {"teacher_gap": ["batch"]}, {}
