"""Shared fixtures: tiny batches and statistics at small resolution."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

# One thread per process, as .ci/run sets it, unless the caller chose: the tests and the Ray workers they
# start share the cores, and more threads than cores slowed a statistics fixture 25-fold on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from autoprox.stats.batch import BatchConfig, make_batch
from autoprox.stats.provider import ScoringConfig
from autoprox.stats.base import StatsConfig


def pytest_collection_modifyitems(items):
    """Tests marked ``ray`` share one xdist group: they run one at a time on one worker, so two Ray
    clusters (each with its own worker processes) never split the cores."""
    for item in items:
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))


def score_named(backend, specs):
    """(proxies x archs) scores of proxy specs (names, files, expressions) on a loaded backend."""
    from autoprox.parallel.backends import score_proxies
    from autoprox.proxy.spec import resolve
    return score_proxies(backend, [resolve(s) for s in specs])

def assert_png(path, min_w: int = 200, min_h: int = 150) -> None:
    """``path`` is a PNG that matplotlib reads back, of a plausible size (pixels), not blank."""
    from matplotlib.image import imread
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[1] >= min_w and img.shape[0] >= min_h, img.shape
    assert img.std() > 0


AF_SMALL = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [3.5] * 12, "num_heads": [3] * 12}
PIT_SMALL = {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}
SMALL = {"autoformer": AF_SMALL, "pit": PIT_SMALL, "autoformer-tiny": AF_SMALL,
         "autoformer-small": {"hidden_dim": 320, "depth": 12, "mlp_ratio": [3.0] * 12, "num_heads": [5] * 12},
         "autoformer-base": {"hidden_dim": 528, "depth": 14, "mlp_ratio": [3.0] * 14, "num_heads": [9] * 14}}
FIDELITY_SPACES = ("autoformer", "pit", "autoformer-tiny")  # both shipped spaces and a supernet space


class TinyCNN(nn.Module):
    """A small ConvNet classifier: last stage 16 channels at 1/4 resolution, then pool + Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                      nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory) -> str:
    """A TorchScript teacher (its forward returns the last-stage map), for tvt."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = TinyCNN()
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; autoprox still reads it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net.features.eval()), str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_batch_cfg() -> BatchConfig:
    return BatchConfig(size=4, resolution=32, num_classes=10, seed=0)


@pytest.fixture(scope="session")
def tiny_batch(tiny_batch_cfg):
    return make_batch(tiny_batch_cfg)


@pytest.fixture
def tiny_scoring(tmp_path, tiny_batch_cfg) -> ScoringConfig:
    return ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                         cache_dir=str(tmp_path / "cache"))


def _two_spaces(tiny_batch_cfg: BatchConfig, cache: Path):
    from autoprox.discovery.config import EvolveConfig
    from autoprox.discovery.objective import ObjectiveConfig
    from autoprox.discovery.variation import VariationConfig
    scoring = ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4), cache_dir=str(cache))
    obj = ObjectiveConfig(spaces=("pit", "autoformer"), limit=10, val_fraction=0.3, test_fraction=0.0,
                          scoring=scoring, space_targets={"autoformer": ("c100_kd",)}, weights={"pit": 2.0})
    var = VariationConfig(leaves=("weight", "linear_input"), single_leaves=("num_params",), max_nodes=8)
    return EvolveConfig(population=4, steps=1, offspring=4, hall_of_fame=3, objective=obj, variation=var,
                        seed_proxies=("params",))


@pytest.fixture(scope="session")
def two_spaces_statistics(tmp_path_factory, tiny_batch_cfg) -> Path:
    """A cache holding the base pass of ``two_spaces``' archs, computed once per session."""
    from autoprox.discovery.objective import Objective
    cache = tmp_path_factory.mktemp("two-spaces") / "cache"
    obj = Objective(_two_spaces(tiny_batch_cfg, cache).objective, ["weight"])
    obj.open()
    obj.close()
    return cache


@pytest.fixture
def two_spaces(tmp_path, tiny_batch_cfg, two_spaces_statistics):
    """A two-benchmark evolution (PiT and AutoFormer, 10 archs each, per-space targets and weights),
    with its own copy of the statistics cache."""
    shutil.copytree(two_spaces_statistics, tmp_path / "cache")
    return _two_spaces(tiny_batch_cfg, tmp_path / "cache")


def use_small_zoo(mp: pytest.MonkeyPatch) -> None:
    """Evolution reports compare the pick with these zoo proxies only (the others need SVDs: slow)."""
    import autoprox.proxy.zoo as zoo
    mp.setattr(zoo, "list_proxies", lambda: ["depth_width", "grad_norm", "params", "snip"])


@pytest.fixture
def small_zoo(monkeypatch):
    use_small_zoo(monkeypatch)
