"""TVT: the teacher pass (teacher_gap), fused proxies and rank-sum fusion."""
from __future__ import annotations

import dataclasses
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import autoprox.stats.teacher as teacher
from autoprox.cli.main import main
from autoprox.proxy.export import export
from autoprox.proxy.fuse import FusedProxy, get_fusion, list_fusions, rank_sum, register_fusion, sum_of_zscores
from autoprox.proxy.graph import GraphError, GraphProxy, parse
from autoprox.parallel.backends import SerialBackend
from primitives.registry import RegistryError
from autoprox.stats.provider import StatsProvider
from autoprox.spaces import get_space, list_spaces
from autoprox.proxy.zoo import get_proxy

from conftest import FIDELITY_SPACES, SMALL, TinyCNN, score_named

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # TorchScript teachers


def _archs(space: str, n: int = 3) -> list[dict]:
    s = get_space(space)
    return [SMALL[space]] + [s.mutate(SMALL[space], random.Random(i), 0.9) for i in range(1, n)]


@pytest.fixture
def tvt_scoring(tiny_scoring, teacher_file):
    return dataclasses.replace(tiny_scoring, teacher=teacher_file)


# ---------------------------------------------------------------- the formula
def test_teacher_gap_by_hand_same_size():
    f_s = torch.zeros(1, 2, 2, 2)
    f_s[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # channel 1 stays 0
    f_t = torch.ones(1, 3, 2, 2)
    q_s = torch.tensor([1.0, 4.0, 9.0, 16.0]) / 2  # channel mean of F^2, flattened
    a_s = q_s / math.sqrt(0.25 + 4 + 20.25 + 64)  # L2-normalised
    a_t = torch.full((4,), 0.5)  # a constant map of 4 pixels
    want = float(((a_s - a_t) ** 2).mean())
    assert float(teacher.teacher_gap(f_s, f_t)) == pytest.approx(want, rel=1e-6)
    assert float(teacher.teacher_gap(f_t, f_t)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("swap", [False, True])
def test_teacher_gap_resizes_to_the_larger_map(swap):
    g = torch.Generator().manual_seed(0)
    small, large = torch.randn(3, 5, 2, 2, generator=g), torch.randn(3, 7, 4, 4, generator=g)
    f_s, f_t = (large, small) if swap else (small, large)
    up = F.interpolate(small, size=(4, 4), mode="bilinear", align_corners=False)
    a = [(x ** 2).mean(1).flatten(1) for x in ((large, up) if swap else (up, large))]
    a = [x / x.norm(dim=1, keepdim=True) for x in a]
    want = float(((a[0] - a[1]) ** 2).mean())
    assert float(teacher.teacher_gap(f_s, f_t)) == pytest.approx(want, rel=1e-5)
    assert torch.allclose(teacher.attention_map(large).norm(dim=1), torch.ones(3))


def test_student_map_drops_the_cls_token():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # cls + 2x2 patches
    m = teacher.student_map(tokens)
    assert m.shape == (2, 3, 2, 2)
    assert torch.equal(m[1, :, 1, 0], tokens[1, 3])  # patch (row 1, col 0) = token 1 + 2
    assert teacher.student_map(torch.zeros(1, 2, 4)).shape == (1, 4, 1, 1)  # PiT's last stage at 32 px


# ---------------------------------------------------------------- loading the teacher
def test_torchscript_and_pickled_teachers_give_the_same_map(tmp_path, tiny_batch, monkeypatch):
    monkeypatch.setenv(teacher.TRUST_ENV, "1")  # a pickled module is read only when trusted
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = TinyCNN().eval()
    torch.save(net, tmp_path / "full.pt")  # a whole classifier: the hook finds the last stage
    torch.jit.save(torch.jit.script(net.features), str(tmp_path / "features.ts"))
    x = tiny_batch.images
    maps = [teacher.teacher_features(teacher.load_teacher(tmp_path / f), x) for f in ("full.pt", "features.ts")]
    assert maps[0].shape == (4, 16, 8, 8)  # not the pooled (B, 16, 1, 1)
    assert torch.allclose(maps[0], maps[1], atol=1e-6)


class _Payload:
    def __reduce__(self):
        return (os.putenv, ("AUTOPROX_PWNED", "1"))


def test_a_pickled_teacher_is_read_only_when_trusted(tmp_path, monkeypatch):
    monkeypatch.delenv(teacher.TRUST_ENV, raising=False)
    torch.save(TinyCNN(), tmp_path / "full.pt")
    with pytest.raises(PermissionError, match=f"pickled module.*TorchScript.*{teacher.TRUST_ENV}=1"):
        teacher.load_teacher(tmp_path / "full.pt")
    torch.save({"w": torch.zeros(2), "x": _Payload()}, tmp_path / "crafted.pt")
    with pytest.raises(PermissionError):
        teacher.load_teacher(tmp_path / "crafted.pt")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('AUTOPROX_PWNED'))"],
                           capture_output=True, text=True)
    assert child.stdout.strip() == "None"  # the payload never ran
    monkeypatch.setenv(teacher.TRUST_ENV, "1")
    assert isinstance(teacher.load_teacher(tmp_path / "full.pt"), nn.Module)


def test_bad_teachers_give_clear_errors(tmp_path, tiny_batch, monkeypatch):
    monkeypatch.setenv(teacher.TRUST_ENV, "1")
    x = tiny_batch.images
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        teacher.load_teacher(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read teacher checkpoint"):
        teacher.load_teacher(tmp_path / "junk.pt")
    torch.save(TinyCNN().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="not a model"):
        teacher.load_teacher(tmp_path / "sd.pt")
    torch.jit.save(torch.jit.script(TinyCNN()), str(tmp_path / "logits.ts"))
    with pytest.raises(ValueError, match="must return its last-stage"):
        teacher.teacher_features(teacher.load_teacher(tmp_path / "logits.ts"), x)
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), tmp_path / "mlp.pt")
    with pytest.raises(ValueError, match="no module of the teacher produced a 4-D"):
        teacher.teacher_features(teacher.load_teacher(tmp_path / "mlp.pt"), x)


def test_missing_teacher_is_a_clear_error(tiny_scoring, tmp_path, capsys):
    p = StatsProvider("pit", tiny_scoring)
    with pytest.raises(ValueError, match="--teacher CHECKPOINT"):
        p.get(SMALL["pit"], {"teacher_gap"})
    gone = StatsProvider("pit", dataclasses.replace(tiny_scoring, teacher=str(tmp_path / "gone.pt")))
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        gone.get(SMALL["pit"], {"teacher_gap"})
    argv = ["bench", "--space", "pit", "--proxy", "tvt", "--limit", "3", "--batch-size", "4", "--resolution",
            "32", "--cache-dir", tiny_scoring.cache_dir, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--teacher CHECKPOINT" in capsys.readouterr().err


# ---------------------------------------------------------------- the pass and its cache
def test_teacher_runs_once_per_batch(tvt_scoring, monkeypatch):
    calls = []
    real = teacher.teacher_features
    monkeypatch.setattr(teacher, "teacher_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = StatsProvider("pit", tvt_scoring)
    gaps = [float(p.get(a, {"teacher_gap"}).get("teacher_gap")[0]) for a in _archs("pit")]
    assert len(calls) == 1 and all(math.isfinite(g) and g >= 0 for g in gaps)
    again = StatsProvider("pit", tvt_scoring)  # cached: the teacher is not even run
    assert [float(again.get(a, {"teacher_gap"}).get("teacher_gap")[0]) for a in _archs("pit")] == gaps
    assert len(calls) == 1


def test_teacher_file_is_in_the_teacher_key_only(tvt_scoring, tmp_path):
    arch = SMALL["pit"]
    path = tmp_path / "t.pt"
    keys = []
    for seed in (0, 0, 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            torch.jit.save(torch.jit.script(TinyCNN().features), str(path))
        p = StatsProvider("pit", dataclasses.replace(tvt_scoring, teacher=str(path)))
        keys.append((p.key(arch, "base"), p.key(arch, "teacher")))
    assert keys[0] == keys[1]  # same bytes, same key
    assert keys[2][0] == keys[0][0] and keys[2][1] != keys[0][1]
    base_only = StatsProvider("pit", dataclasses.replace(tvt_scoring, teacher=None))
    assert base_only.key(arch, "base") == keys[0][0]


# ---------------------------------------------------------------- fusion
def test_rank_sum_with_ties_and_nan():
    m = np.array([[1.0, 2.0, 2.0, np.nan, 5.0], [3.0, 1.0, 2.0, 0.0, 0.0]])
    got = rank_sum(m)  # ranks among archs 0,1,2,4: [1, 2.5, 2.5, 4] + [4, 2, 3, 1]
    np.testing.assert_array_equal(got, [5.0, 4.5, 5.5, np.nan, 5.0])
    assert np.isnan(rank_sum(np.array([[np.nan, 1.0], [1.0, np.nan]]))).all()
    z = sum_of_zscores(np.array([[1.0, 2.0, 3.0], [7.0, 7.0, 7.0]]))
    np.testing.assert_allclose(z, [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])


def test_fusion_registry():
    assert {"rank_sum", "sum_of_zscores"} <= set(list_fusions()) and get_fusion("rank_sum") is rank_sum
    with pytest.raises(RegistryError, match="already registered"):
        register_fusion("rank_sum")(rank_sum)
    with pytest.raises(RegistryError, match="unknown fusion"):
        FusedProxy("x", (GraphProxy.from_text("a", "num_params"),), "nope")


def test_teacher_gap_is_a_single_value():
    assert str(parse("negate(teacher_gap)")) == "negate(teacher_gap)"
    with pytest.raises(GraphError, match="per-layer input"):
        parse("agg_sum(teacher_gap)")


# ---------------------------------------------------------------- tvt end to end
@pytest.mark.parametrize("space", FIDELITY_SPACES)
def test_tvt_scores_tiny_archs(space, tvt_scoring):
    tvt = get_proxy("tvt")
    assert [str(p.expr) for p in tvt.parts] == ["negate(teacher_gap)", "agg_sum(weight_norm)"]
    be = SerialBackend(space, tvt_scoring)
    be.load(_archs(space), sorted(tvt.families | get_proxy("snip").families))
    m = score_named(be, ["params", "tvt", "snip"])
    assert m.shape == (3, 3) and np.isfinite(m).all()
    parts = be.score([str(p.expr) for p in tvt.parts])
    np.testing.assert_array_equal(m[1], rank_sum(parts))
    np.testing.assert_array_equal(m[[0, 2]], score_named(be, ["params", "snip"]))


def test_tvt_in_zoo_and_export(tmp_path, capsys):
    assert main(["zoo"]) == 0
    assert " | teacher_gap, weight_norm | `rank_sum(" in capsys.readouterr().out
    assert main(["export", "tvt"]) == 0  # a fused proxy's formula
    assert capsys.readouterr().out.startswith("rank_sum(")
    assert main(["export", "tvt", "--format", "python"]) == 2
    assert "needs a ConvNet teacher" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a ConvNet teacher"):
        export(get_proxy("tvt").parts[0], "python")
    assert export(get_proxy("tvt").parts[0], "text").strip() == "-(teacher_gap)"


def test_cli_bench_with_teacher(tiny_scoring, teacher_file, tmp_path, capsys):
    argv = ["bench", "--space", "pit", "--proxy", "tvt", "params", "--limit", "4", "--batch-size", "4",
            "--resolution", "32", "--num-classes", "10", "--cache-dir", tiny_scoring.cache_dir,
            "--teacher", teacher_file, "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    rows = (tmp_path / "out" / "bench.csv").read_text().splitlines()
    assert any(r.startswith("tvt,JCM,4,") for r in rows), rows
    assert "teacher: " + teacher_file in (tmp_path / "out" / "config.yaml").read_text()


def test_torchscript_calling_foreign_operators_loads_only_when_trusted(tmp_path, monkeypatch):
    """A TorchScript teacher runs no Python, but operators outside torch's namespaces (registered by
    whatever else the process imported) or custom classes could: such a file needs the user's trust."""
    import zipfile
    monkeypatch.delenv(teacher.TRUST_ENV, raising=False)
    torch.jit.save(torch.jit.script(TinyCNN().features), str(tmp_path / "ok.ts"))
    assert isinstance(teacher.load_teacher(tmp_path / "ok.ts"), torch.jit.ScriptModule)  # torch's own ops only
    with zipfile.ZipFile(tmp_path / "ok.ts") as src, zipfile.ZipFile(tmp_path / "evil.ts", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("code/__torch__/torch/nn/modules/container.py"):
                data = data.replace(b"return", b"_x = ops.evil.run(input)\n    return", 1)
            dst.writestr(item, data)
    with pytest.raises(PermissionError, match=r"TorchScript calling ops\.evil.*AUTOPROX_TRUST_PICKLE=1"):
        teacher.load_teacher(tmp_path / "evil.ts")
