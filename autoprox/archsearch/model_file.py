"""From a found arch to training: ``autoprox build`` writes a loadable model and its JSON config.

- ``model.pt``: the state dict of the model autoprox builds at the seed (``torch.load`` it into
  ``get_space(space).build(arch, ...)``, or into the ``model.py`` file's ``build()``);
- ``model.py``: a torch-only file whose ``build()`` returns that same model (same weights at the
  same seed), for training code that does not install autoprox;
- beside either, ``<stem>.json``: space, arch, classes, image size, seed, drop-path rate, #params
  and FLOPs.
"""
from __future__ import annotations

import inspect
import io
import json
import sys
from pathlib import Path
from typing import Mapping

import torch

from autoprox.core.config import MAX_DEPTH, json_depth, read_yaml
from autoprox.core.io import atomic_write_many
from autoprox.spaces import get_space, layers

SUFFIXES = (".pt", ".py")


def arch_from(text: str, rank: int) -> tuple[dict, str | None]:
    """(arch, its space or None): ``text`` is an arch as JSON, or a search's result.yaml whose
    ``top`` entry of rank ``rank`` (1 = best) is taken."""
    path = Path(text)
    if not text.lstrip().startswith("{") and path.suffix in (".yaml", ".yml"):
        doc = read_yaml(path, "search result", ValueError)
        top = doc.get("top") if isinstance(doc, dict) else None
        if not isinstance(top, list) or not top:
            raise ValueError(f"{text}: not a search result (no 'top' list of archs)")
        if not 1 <= rank <= len(top):
            raise ValueError(f"--rank {rank}: {text} holds ranks 1 to {len(top)}")
        return dict(top[rank - 1]["arch"]), doc.get("space")
    if json_depth(text) > MAX_DEPTH:
        raise ValueError(f"arch: JSON nested too deep to be an arch (at most {MAX_DEPTH} levels)")
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"arch: neither JSON ({e.msg}) nor a result.yaml path: {text[:60]!r}") from None
    if not isinstance(arch, dict):
        raise ValueError(f"arch: expected a JSON object, got {type(arch).__name__}")
    return arch, None


def torch_file(space: str, arch: Mapping, num_classes: int, img_size: int, seed: int, drop_path: float) -> str:
    """The text of a torch-only ``model.py`` building ``arch`` as autoprox builds it."""
    sp = get_space(space)
    if not sp.torch_parts:
        raise ValueError(f"space {space!r} declares no torch-only model source; write --out model.pt instead")
    owner = next(c for c in type(sp).__mro__ if "torch_parts" in vars(c))  # a declared space's class is made at run time
    module = sys.modules[owner.__module__]
    lib = [ln for ln in inspect.getsource(layers).splitlines() if not ln.startswith("from __future__")]
    parts = [f"{p} = {getattr(module, p)!r}" if isinstance(p, str) else inspect.getsource(p)
             for p in sp.torch_parts]
    return f'''"""A {space} ViT found by autoprox, as a torch-only file: ``build()`` returns the model autoprox
builds for this arch ({num_classes} classes, {img_size} px, seed {seed}); train it as any torch module.
Written by `autoprox build`; the code below is autoprox's own.
"""
from __future__ import annotations

from typing import Callable


class ArchError(ValueError):
    """An arch outside the space."""


{chr(10).join(lib)}


{chr(10).join(parts)}


SPACE = {space!r}
ARCH = {dict(arch)!r}


def build(num_classes: int = {num_classes}, img_size: int = {img_size}, drop_path: float = {drop_path},
          seed: int = {seed}) -> nn.Module:
    """The model, initialised as autoprox initialises it at ``seed``."""
    arch = ARCH
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {sp.torch_call}


if __name__ == "__main__":
    model = build()
    print(f"{{SPACE}} model: {{sum(p.numel() for p in model.parameters()) / 1e6:.2f}}M parameters")
'''


def write_model(out: str | Path, space: str, arch: Mapping, num_classes: int = 1000, img_size: int = 224,
                seed: int = 0, drop_path: float = 0.1) -> tuple[Path, Path]:
    """Write ``out`` (.pt state dict or .py torch-only file) and its JSON config, together or not at
    all; (model path, config path)."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise ValueError(f"--out {out}: use a .pt (state dict) or .py (torch-only model file) name")
    sp = get_space(space)
    a = sp.validate(arch)
    model = sp.build(a, num_classes=num_classes, img_size=img_size, seed=seed, drop_path=drop_path)
    config = {"space": space, "arch": a, "num_classes": num_classes, "img_size": img_size, "seed": seed,
              "drop_path": drop_path, "num_params": sum(p.numel() for p in model.parameters()),
              "flops": sp.flops(a, num_classes, img_size), "model": out.name}
    if out.suffix == ".pt":
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        body = buf.getvalue()
    else:
        body = torch_file(space, a, num_classes, img_size, seed, drop_path).encode()
    cfg_path = out.with_suffix(".json")
    atomic_write_many({out: body, cfg_path: (json.dumps(config, indent=2) + "\n").encode()})
    return out, cfg_path
