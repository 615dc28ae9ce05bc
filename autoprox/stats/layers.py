"""Which parameters of a torch ViT are its weight layers, and where their hooks go.

Torch only (exported Python files embed it). Weight layers are the modules tagged with
``KIND_ATTR`` (autoprox's own spaces); in an untagged model, every Linear/Conv2d (the kind guessed
by name) and the two projections of every ``nn.MultiheadAttention``. That module applies its
projections itself, so they are ``ParamWeight`` records, hooked on the attention module. ``MhaMaps`` lets hooks read an ``nn.MultiheadAttention``'s attention maps, and
``timm_attention_hooks`` those of timm's ``Attention`` (its fused kernel switched off while hooked).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

KIND_ATTR = "autoprox_kind"  # = autoprox.spaces.layers.KIND_ATTR, spelled out: this file imports torch only
_NAME_KINDS = (("qkv", "attn_qkv"), ("attn.proj", "attn_proj"), ("fc1", "mlp_fc1"), ("fc2", "mlp_fc2"),
               ("patch", "patch"), ("head", "head"))


class ParamWeight:
    """A weight layer that is not a module: ``weight`` is the parameter, ``owner`` the module whose
    forward computes with it (its hooks stand for the layer's)."""

    def __init__(self, owner: nn.Module, get: Callable[[], torch.Tensor]) -> None:
        self.owner, self._get = owner, get

    @property
    def weight(self) -> torch.Tensor:
        return self._get()


def hook_owner(layer: object) -> nn.Module:
    """The module to hook for a weight layer."""
    return layer.owner if isinstance(layer, ParamWeight) else layer


def _mha_layers(m: nn.MultiheadAttention) -> list[tuple[ParamWeight, str]]:
    names = ["in_proj_weight"] if m.in_proj_weight is not None else ["q_proj_weight", "k_proj_weight",
                                                                     "v_proj_weight"]
    out = [(ParamWeight(m, lambda n=n: getattr(m, n)), "attn_qkv") for n in names]
    return out + [(ParamWeight(m, lambda: m.out_proj.weight), "attn_proj")]


def weight_layers(model: nn.Module) -> list[tuple[object, str]]:
    """(layer, kind) of every weight layer, in registration order; a layer has ``.weight``."""
    tagged = [(m, getattr(m, KIND_ATTR)) for m in model.modules() if hasattr(m, KIND_ATTR)]
    if tagged:
        return tagged
    out: list[tuple[object, str]] = []
    inside: set[int] = set()
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            out += _mha_layers(m)
            inside.add(id(m.out_proj))
        elif isinstance(m, (nn.Linear, nn.Conv2d)) and id(m) not in inside:
            out.append((m, next((k for key, k in _NAME_KINDS if key in name), "other")))
    return out


class MhaMaps:
    """Hooks making an ``nn.MultiheadAttention`` return its per-head attention maps to ``store``
    while its caller gets what it asked for (no maps, or the head-averaged ones). Callers that pass
    ``need_weights`` positionally are left alone."""

    def __init__(self, store: Callable[[torch.Tensor], None]) -> None:
        self.store = store
        self.asked: list[tuple[bool, bool]] = []

    def attach(self, m: nn.MultiheadAttention) -> list:
        return [m.register_forward_pre_hook(self._pre, with_kwargs=True), m.register_forward_hook(self._post)]

    def _pre(self, m: nn.Module, args: tuple, kwargs: dict):
        if len(args) > 4:
            self.asked.append((True, True))
            return None
        self.asked.append((kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True)))
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def _post(self, m: nn.Module, inputs: tuple, out: tuple):
        need, average = self.asked.pop()
        maps = out[1]
        if maps is None or maps.dim() != 4:
            return None
        self.store(maps)
        return out[0], (maps.mean(1) if average else maps) if need else None


class _Restore:
    """Sets an attribute for as long as the hooks live; ``remove`` puts the old value back."""

    def __init__(self, obj: object, name: str, value: object) -> None:
        self.obj, self.name, self.old = obj, name, getattr(obj, name)
        setattr(obj, name, value)

    def remove(self) -> None:
        setattr(self.obj, self.name, self.old)


def _timm_attention(model: nn.Module) -> list[nn.Module]:
    """timm-style attention: a module whose class is named ``Attention``, with ``fused_attn`` and an
    ``attn_drop`` Dropout applied to the softmax probabilities."""
    return [m for m in model.modules() if type(m).__name__ == "Attention" and hasattr(m, "fused_attn")
            and isinstance(getattr(m, "attn_drop", None), nn.Dropout)]


def unfused_attention(model: nn.Module) -> list:
    """timm-style attention computed step by step while the returned handles live (torch's fused
    kernels have no double backward); ``remove()`` each to restore."""
    return [_Restore(m, "fused_attn", False) for m in _timm_attention(model)]


def timm_attention_hooks(model: nn.Module, store: Callable[[torch.Tensor], None]) -> list:
    """For timm-style attention: the fused kernel off while hooked, and the input of ``attn_drop`` (the
    softmax probabilities) to ``store``. Removable handles, the switch included."""
    handles = unfused_attention(model)
    for m in _timm_attention(model):
        handles.append(m.attn_drop.register_forward_hook(lambda mod, i, o: store(i[0])))
    return handles


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's random streams (the CPU's, and ``device``'s when it is a GPU) seeded with ``seed`` for
    the block and restored after it: the block's draws (DropPath masks...) are fixed by the seed,
    the caller's stream is left as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield

