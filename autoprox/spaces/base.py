"""The search-space interface and its registry."""
from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from typing import Any, Mapping

import torch
from torch import nn

from autoprox.core.errors import AutoproxError
from primitives.registry import Registry


ARCH_SCALARS = ("depth", "width", "heads", "mlp_ratio")  # keys of SearchSpace.arch_scalars


class ArchError(ValueError, AutoproxError):
    """An architecture outside its search space; the message names the field."""


class SearchSpace(ABC):
    """Validation, sampling, variation, counting and building of one ViT family."""

    name: str = ""

    @abstractmethod
    def validate(self, arch: Mapping[str, Any]) -> dict:
        """Return the canonical form of ``arch`` or raise ``ArchError``."""

    @abstractmethod
    def sample(self, rng: random.Random) -> dict:
        """A uniformly random legal arch."""

    @abstractmethod
    def mutate(self, arch: Mapping[str, Any], rng: random.Random, prob: float = 0.3) -> dict:
        """Resample each gene of ``arch`` with probability ``prob``."""

    @abstractmethod
    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: random.Random) -> dict:
        """Each gene from either parent; always legal."""

    @abstractmethod
    def num_params(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224) -> int:
        """Analytic parameter count (equals the built model's)."""

    @abstractmethod
    def flops(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224) -> int:
        """Analytic multiply-accumulates of one forward pass on one image."""

    @abstractmethod
    def arch_scalars(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """Data-free shape of ``arch``, one value each for ``ARCH_SCALARS``, every one a
        mean over the transformer blocks so the spaces agree: ``depth`` (number of blocks),
        ``width`` (mean embedding width a block works at), ``heads`` (mean attention heads)
        and ``mlp_ratio`` (mean MLP expansion)."""

    # What a torch-only model file embeds to build this space's models (``autoprox build --out
    # model.py``): module constants (names) and classes/functions, in order, after ``layers.py``;
    # and the constructor call over ``arch, num_classes, img_size, drop_path``. Empty: no such file.
    torch_parts: tuple = ()
    torch_call: str = ""

    @abstractmethod
    def _build(self, arch: dict, num_classes: int, img_size: int, drop_path: float) -> nn.Module:
        """Construct and initialise the model (called under a seeded RNG)."""

    def build(self, arch: Mapping[str, Any], num_classes: int = 100, img_size: int = 224,
              seed: int = 0, drop_path: float = 0.1) -> nn.Module:
        """A freshly initialised model, identical for the same arguments.

        The seed is applied inside ``fork_rng`` so torch's global RNG is untouched.
        """
        arch = self.validate(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build(arch, num_classes, img_size, drop_path)

    def key(self, arch: Mapping[str, Any]) -> str:
        """Canonical JSON string of a validated arch (stable across dict orders)."""
        return json.dumps(self.validate(arch), sort_keys=True, separators=(",", ":"))


def check_choice(field: str, value: Any, choices: tuple) -> None:
    if isinstance(value, bool) or value not in choices:
        raise ArchError(f"{field}={value!r} is outside the space; allowed: {list(choices)}")


def check_keys(arch: Mapping[str, Any], keys: tuple[str, ...], space: str) -> None:
    if not isinstance(arch, Mapping):
        raise ArchError(f"{space} arch must be a mapping, got {type(arch).__name__}")
    missing = [k for k in keys if k not in arch]
    extra = [k for k in arch if k not in keys]
    if missing:
        raise ArchError(f"{space} arch is missing field(s) {missing}")
    if extra:
        raise ArchError(f"{space} arch has unknown field(s) {extra}; fields: {list(keys)}")


SPACES: Registry[SearchSpace] = Registry("search space")


def register_space(name: str):
    """Class decorator: register one instance of a ``SearchSpace`` under ``name``."""
    def deco(cls: type[SearchSpace]) -> type[SearchSpace]:
        cls.name = name
        SPACES.add(name, cls())
        return cls
    return deco


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name)


def list_spaces() -> list[str]:
    return SPACES.names()
