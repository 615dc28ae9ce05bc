"""Shared fixtures: tiny batches and statistics at small resolution."""
from __future__ import annotations

import pytest

from autoprox.batch import BatchConfig, make_batch
from autoprox.scoring import ScoringConfig
from autoprox.stats import StatsConfig

AF_SMALL = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [3.5] * 12, "num_heads": [3] * 12}
PIT_SMALL = {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}
SMALL = {"autoformer": AF_SMALL, "pit": PIT_SMALL}


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
