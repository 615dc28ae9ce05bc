import importlib.util
import math

import numpy as np
import pytest
import torch

from autoprox.cli.main import main
from autoprox.proxy.export import export, load_proxy
from autoprox.proxy.graph import GraphError, GraphProxy
from autoprox.parallel.backends import SerialBackend
from autoprox.stats.provider import ScoringConfig
from autoprox.spaces import get_space, list_spaces
from autoprox.stats.base import StatsConfig
from autoprox.stats.passes import all_families
from autoprox.proxy.zoo import get_proxy, list_proxies

from conftest import SMALL, score_named

GRAPH_PROXIES = [n for n in list_proxies() if isinstance(get_proxy(n), GraphProxy)]


@pytest.fixture(scope="module")
def fp32_scoring(tmp_path_factory, tiny_batch_cfg, teacher_file):
    return ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4, dtype="float32"),
                         cache_dir=str(tmp_path_factory.mktemp("cache")), teacher=teacher_file)  # tvt needs one


@pytest.mark.parametrize("space", list_spaces())
def test_every_zoo_proxy_scores_a_tiny_vit(space, fp32_scoring):
    s = get_space(space)
    archs = [SMALL[space], s.mutate(SMALL[space], __import__("random").Random(1), 0.9)]
    backend = SerialBackend(space, fp32_scoring)
    backend.load(archs, all_families())  # every pass, optional ones included
    scores = score_named(backend, list_proxies())
    assert scores.shape == (len(list_proxies()), 2)
    assert np.all(np.isfinite(scores)), dict(zip(list_proxies(), scores.tolist()))


@pytest.mark.parametrize("name,run_hash", [("evolved_pit", "dc060dd958c0"), ("evolved_autoformer", "fe788beb5087"),
                                           ("evolved_generic", "42446bdf4170"),
                                           ("evolved_c100_kd", "f04fff4bd0546d53")])
def test_shipped_evolved_proxies_are_the_runs_picks(name, run_hash):
    assert get_proxy(name).hash == run_hash  # the hash in runs/<config>/best.yaml of the reported run


@pytest.mark.parametrize("name", GRAPH_PROXIES)
def test_yaml_roundtrip_same_hash(name, tmp_path):
    p = get_proxy(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(export(p, "yaml"))
    q = load_proxy(path)
    assert q.hash == p.hash and q.expr == p.expr
    assert export(p, "text").strip() and export(p, "latex").strip()


def test_edited_yaml_is_refused(tmp_path):
    text = export(get_proxy("evolved_generic"), "yaml").replace("op: abs", "op: square")
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(GraphError, match="it was edited"):
        load_proxy(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("expression: agg_sum(abs(weight))\nbogus: 1\n")
    with pytest.raises(GraphError, match="unknown key"):
        load_proxy(tmp_path / "y.yaml")


@pytest.mark.parametrize("space", list_spaces())
@pytest.mark.parametrize("name", ["autoprox_paper", "dss", "snip", "naswot", "fisher", "grasp", "zico", "jacov",
                                  "synflow"])
def test_python_export_gives_the_engines_score(space, name, tmp_path, tiny_batch, fp32_scoring):
    path = tmp_path / f"{name}.py"
    path.write_text(export(get_proxy(name), "python"))
    spec = importlib.util.spec_from_file_location(f"exported_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = get_space(space).build(SMALL[space], num_classes=10, img_size=32, seed=0)
    got = mod.score(model, tiny_batch.images, tiny_batch.labels, seed=0, samples=2, tokens=4)
    backend = SerialBackend(space, fp32_scoring)
    backend.load([SMALL[space]], get_proxy(name).families)
    want = score_named(backend, [name])[0, 0]
    assert math.isfinite(got) and got == pytest.approx(want, rel=1e-5)


def test_exported_file_needs_only_torch(tmp_path):
    src = export(get_proxy("dss"), "python")
    imports = {ln.split()[1].split(".")[0] for ln in src.splitlines()
               if ln.startswith(("import ", "from ")) and not ln.startswith("from __future__")}
    assert imports <= {"torch", "math", "typing", "dataclasses"}, imports


def test_cli_zoo_and_export(tmp_path, capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in list_proxies():
        assert f"| {name} |" in out
    assert main(["export", "autoprox_paper", "--format", "yaml", "--out", str(tmp_path / "p.yaml")]) == 0
    assert main(["export", str(tmp_path / "p.yaml"), "--format", "text"]) == 0
    assert "minmax(linear_input)" in capsys.readouterr().out
    assert main(["export", "nope"]) == 2
