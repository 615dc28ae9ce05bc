"""What the verbs write: scores.csv, file modes under the umask, the values config.yaml records,
--bench-only's budget, and the exported file's command line."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import stat

import pytest
import yaml

from autoprox.cli.main import main
from autoprox.core.io import atomic_write_text
from autoprox.data.benchmark import DEFAULT_TARGETS, load_benchmark
from autoprox.spaces import get_space
from tests.conftest import PIT_SMALL


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode


def test_bench_scores_csv_and_config(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert main(["bench", "--space", "pit", "--proxy", "params", "flops", "--limit", "6",
                     "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "o"
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert list(rows[0]) == ["index", "arch", "score_params", "score_flops", "num_params", "flops", *DEFAULT_TARGETS]
    b, sp = load_benchmark("pit"), get_space("pit")
    assert len(rows) == 6
    for i, r in enumerate(rows):
        arch = json.loads(r["arch"])
        assert arch == sp.validate(b.archs[i])
        assert int(r["num_params"]) == sp.num_params(arch, 100, 224)
        assert int(r["flops"]) == sp.flops(arch, 100, 224)
        # proxies evaluate in float32: the data-free scores are the counts to float32 precision
        assert float(r["score_params"]) == pytest.approx(int(r["num_params"]), rel=1e-7)
        assert float(r["score_flops"]) == pytest.approx(int(r["flops"]), rel=1e-7)
        assert [float(r[t]) for t in DEFAULT_TARGETS] == [b.values(t)[i] for t in DEFAULT_TARGETS]
    cfg = yaml.safe_load(open(out / "config.yaml"))
    assert cfg["targets"] == list(DEFAULT_TARGETS) and cfg["scoring"]["cache_dir"] == str(tmp_path / "c")


def test_config_records_the_default_cache_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "env-cache"))
    assert main(["bench", "--space", "pit", "--proxy", "params", "--limit", "3", "--targets", "c100_kd",
                 "--out", str(tmp_path / "o")]) == 0
    cfg = yaml.safe_load(open(tmp_path / "o" / "config.yaml"))
    assert cfg["scoring"]["cache_dir"] == str(tmp_path / "env-cache") and cfg["targets"] == ["c100_kd"]


def test_bench_only_records_the_pool_it_scored(tmp_path, capsys):
    assert main(["search", "--proxy", "params", "--space", "pit", "--bench-only", "--params", "1-6",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 0
    sp, b = get_space("pit"), load_benchmark("pit")
    pool = [a for a in b.archs if 1e6 <= sp.num_params(sp.validate(a), 100, 224) <= 6e6]
    res = yaml.safe_load(open(tmp_path / "o" / "result.yaml"))
    cfg = yaml.safe_load(open(tmp_path / "o" / "config.yaml"))
    assert 0 < len(pool) < len(b) and res["budget"] == res["scored"] == cfg["budget"] == len(pool)
    assert "exhausted" not in res and cfg["targets"] == list(DEFAULT_TARGETS)
    text = (tmp_path / "o" / "result.yaml").read_text(encoding="utf-8")  # readable as written, not escaped
    assert "| τ [95% CI] |" in text and "\\u03C4" not in text and "τ [95% CI]" in res["bench_only"]["markdown"]
    assert cfg["scoring"]["cache_dir"] == str(tmp_path / "c")


def test_exported_file_scores_an_arch_from_the_command_line(tmp_path, capsys):
    assert main(["export", "params", "--format", "python", "--out", str(tmp_path / "p.py")]) == 0
    spec = importlib.util.spec_from_file_location("exported_params", tmp_path / "p.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    capsys.readouterr()
    mod.main(["--space", "pit", json.dumps(PIT_SMALL)])
    assert float(capsys.readouterr().out) == get_space("pit").num_params(PIT_SMALL, 100, 224)
    with pytest.raises(SystemExit) as e:
        mod.main(["--space", "pit", '{"base_dim": 16}'])
    assert e.value.code == 2 and "missing field" in capsys.readouterr().err
