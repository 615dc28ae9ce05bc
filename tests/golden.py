"""Golden values of every statistics pass: ``python tests/golden.py`` rewrites tests/golden/passes.json.

Run it only after bumping the ``version`` of each pass whose values you changed on purpose
(``autoprox/stats/passes.py``): ``tests/test_passes_golden.py`` compares every pass's current
values with the file and fails when they differ under the same version, because every cached
entry of that pass would then be served stale.
"""
from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "passes.json"
ARCHS = {"pit": {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]},
         "autoformer": {"hidden_dim": 192, "depth": 12, "mlp_ratio": [3.5] * 12, "num_heads": [3] * 12}}


def _teacher(folder: Path):
    """The teacher target of the tiny batch: the seeded TinyCNN of tests/conftest.py, as TorchScript."""
    sys.path.insert(0, str(HERE))
    from conftest import TinyCNN
    from autoprox.stats.teacher import teacher_target
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = TinyCNN()
    path = folder / "teacher.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net.features.eval()), str(path))
    from autoprox.stats.batch import BatchConfig, make_batch
    return teacher_target(path, make_batch(BatchConfig(size=4, resolution=32, num_classes=10, seed=0)).images)


def digest(pass_name: str, teacher) -> dict:
    """Per space and family of one pass: [count, sum, sum of |x|] of its float32 values on a tiny arch."""
    from autoprox.spaces import get_space
    from autoprox.stats.base import StatsConfig
    from autoprox.stats.batch import BatchConfig, make_batch
    from autoprox.stats.extract import extract
    from autoprox.stats.passes import get_pass
    b = make_batch(BatchConfig(size=4, resolution=32, num_classes=10, seed=0))
    cfg = StatsConfig(act_samples=2, act_tokens=4, dtype="float32")
    out = {}
    for space, arch in ARCHS.items():
        s = extract(get_space(space), arch, b.images, b.labels, 10, 0, cfg, "cpu", [pass_name], None, teacher)
        for f in get_pass(pass_name).families:
            v = torch.cat([t.double().flatten() for t in s.tensors[f]])
            out[f"{space}/{f}"] = [int(v.numel()), float(v.sum()), float(v.abs().sum())]
    return out


def current() -> dict:
    from autoprox.stats.passes import get_pass, list_passes
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        teacher = _teacher(Path(d))
        return {p: {"version": get_pass(p).version, "values": digest(p, teacher)} for p in list_passes()}


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
