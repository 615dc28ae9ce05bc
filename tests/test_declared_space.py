"""Search spaces declared in YAML (``--space FILE.yaml``): the builder's archs, counts and models over the
declared choices; bad files are one-line errors before anything is written."""
import random
import subprocess
import sys

from pathlib import Path

import pytest
import torch

from autoprox.core.config import ConfigError
from autoprox.spaces import get_space
from autoprox.stats.provider import StatsProvider

NARROW = """name: tiny-narrow
builder: autoformer-supernet
hidden_dim: [192, 216]
depth: [12, 13]
mlp_ratio: [3.5, 4.0]
num_heads: [3, 4]
"""


@pytest.fixture
def narrow(tmp_path):
    p = tmp_path / "narrow.yaml"
    p.write_text(NARROW)
    return str(p)


def test_a_declared_space_samples_counts_and_builds_like_its_builder(narrow):
    sp, ref = get_space(narrow), get_space("autoformer-tiny")
    assert sp.name == "tiny-narrow" and sp.choices()["depth"] == (12, 13)
    rng = random.Random(0)
    archs = [sp.sample(rng) for _ in range(20)]
    assert {a["depth"] for a in archs} == {12, 13} and {a["hidden_dim"] for a in archs} == {192, 216}
    a = {"hidden_dim": 216, "depth": 12, "mlp_ratio": [4.0, 3.5] * 6, "num_heads": [4, 3] * 6}
    assert sp.num_params(a, 10, 32) == ref.num_params(a, 10, 32)
    m = sp.build(a, num_classes=10, img_size=32, seed=0)
    assert sum(p.numel() for p in m.parameters()) == sp.num_params(a, 10, 32)
    r = ref.build(a, num_classes=10, img_size=32, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), r.state_dict().values()))
    with pytest.raises(ValueError, match="depth"):
        sp.validate({**a, "depth": 14, "mlp_ratio": [4.0] * 14, "num_heads": [3] * 14})  # outside the declared choices


def test_statistics_of_a_declared_space_go_to_its_own_cache_folder(narrow, tiny_scoring, tmp_path):
    a = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0, 3.5] * 6, "num_heads": [3] * 12}
    got = StatsProvider(narrow, tiny_scoring).get(a, ["snip_saliency"])
    want = StatsProvider("autoformer-tiny", tiny_scoring).get(a, ["snip_saliency"])
    assert torch.equal(torch.stack(list(got.get("snip_saliency"))), torch.stack(list(want.get("snip_saliency"))))
    assert sorted(p.name for p in Path(tiny_scoring.cache_dir).iterdir()) == ["autoformer-tiny", "tiny-narrow"]


@pytest.mark.parametrize("edit, message", [
    ("builder: autoformer-supernet", None),
    ("builder: pit", "builder 'pit' is not one of"),
    ("extra: 1", "unknown key"),
    ("num_heads: [5]", None),
    ("depth: []", "depth must list distinct positive choices"),
])
def test_bad_space_files_are_one_line(tmp_path, edit, message):
    key = edit.split(":")[0]
    lines = [ln for ln in NARROW.splitlines() if not ln.startswith(key + ":")] + [edit]
    p = tmp_path / "s.yaml"
    p.write_text("\n".join(lines) + "\n")
    if message is None:
        get_space(str(p))
        return
    with pytest.raises(ConfigError, match=message):
        get_space(str(p))


def test_autoformer_builder_needs_heads_dividing_the_width(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(NARROW.replace("autoformer-supernet", "autoformer").replace("[3, 4]", "[5]"))
    with pytest.raises(ConfigError, match="192 is not divisible by 5 heads"):
        get_space(str(p))


def test_cli_search_takes_a_space_file_and_refuses_a_bad_one(narrow, tmp_path):
    run = [sys.executable, "-m", "autoprox.cli.main", "search", "--proxy", "params", "--budget", "6"]
    ok = subprocess.run(run + ["--space", narrow, "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "hidden_dim" in (tmp_path / "s" / "result.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(NARROW.replace("builder: autoformer-supernet", "builder: vit"))
    r = subprocess.run(run + ["--space", str(bad), "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "builder 'vit'" in r.stderr
    assert not (tmp_path / "b").exists()
