import importlib.util
import math
import os

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
    fused = export(get_proxy("evolved_c100_kd"), "yaml")
    (tmp_path / "f.yaml").write_text(fused.replace("hash: ", "hash: 0", 1))
    with pytest.raises(GraphError, match="the proxy hashes to .* it was edited"):
        load_proxy(tmp_path / "f.yaml")
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
    assert imports <= {"torch", "math", "typing", "dataclasses", "copy", "contextlib"}, imports  # the standard library and torch
    names = [ln.split("(")[0].split()[1] for ln in src.splitlines() if ln.startswith(("def ", "class "))]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)  # no embedded
    # file redefines another's name


def test_cli_zoo_and_export(tmp_path, capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in list_proxies():
        assert f"| {name} |" in out
    assert main(["export", "autoprox_paper", "--format", "yaml", "--out", str(tmp_path / "p.yaml")]) == 0
    assert main(["export", str(tmp_path / "p.yaml"), "--format", "text"]) == 0
    assert "minmax(linear_input)" in capsys.readouterr().out
    assert main(["export", "nope"]) == 2


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", [n for n in list_proxies() if n != "tvt"])
def test_every_zoo_proxy_exports_and_scores_as_the_engine(name, tmp_path, tiny_batch, fp32_scoring):
    """Every kind (statistics, arch shape, FLOPs, fused across archs) exports as text, LaTeX, YAML
    and a torch-only file whose ``score_population`` gives the engine's scores of two archs."""
    p = get_proxy(name)
    for fmt in ("text", "latex"):
        assert export(p, fmt).strip()
    (tmp_path / "p.yaml").write_text(export(p, "yaml"))
    assert load_proxy(tmp_path / "p.yaml").hash == p.hash
    (tmp_path / "p.py").write_text(export(p, "python"))
    mod = _load_module(tmp_path / "p.py", f"exported_all_{name}")
    sp = get_space("pit")
    archs = [SMALL["pit"], sp.mutate(SMALL["pit"], __import__("random").Random(3), 0.9)]
    models = [sp.build(a, num_classes=10, img_size=32, seed=0) for a in archs]
    got = mod.score_population(models, tiny_batch.images, tiny_batch.labels, seed=0, samples=2, tokens=4,
                               arch_scalars=[sp.arch_scalars(a) for a in archs],
                               flops=[sp.flops(a, 10, 32) for a in archs])
    backend = SerialBackend("pit", fp32_scoring)
    backend.load(archs, all_families())
    want = score_named(backend, [name])[0]
    assert np.allclose(got, want, rtol=1e-5), (got, want)


def test_exported_files_say_what_they_need(tmp_path, tiny_batch):
    """A shape proxy without the arch's scalars, a fused proxy scored alone: one-line errors."""
    sp = get_space("pit")
    model = sp.build(SMALL["pit"], num_classes=10, img_size=32, seed=0)
    for name, call, match in [("depth_width", "score", "pass arch_scalars="),
                              ("evolved_c100_kd", "score", "use score_population"),
                              ("flops", "score", "pass flops=")]:
        (tmp_path / f"{name}.py").write_text(export(get_proxy(name), "python"))
        mod = _load_module(tmp_path / f"{name}.py", f"exported_need_{name}")
        with pytest.raises(ValueError, match=match):
            getattr(mod, call)(model, tiny_batch.images, tiny_batch.labels)


def test_api_scores_shape_and_fused_proxies(tiny_batch, fp32_scoring):
    import autoprox
    sp = get_space("pit")
    archs = [SMALL["pit"], sp.mutate(SMALL["pit"], __import__("random").Random(3), 0.9)]
    build = lambda a: sp.build(a, num_classes=10, img_size=32, seed=0)  # noqa: E731
    backend = SerialBackend("pit", fp32_scoring)
    backend.load(archs, get_proxy("evolved_c100_kd").families)
    assert autoprox.score(build(archs[0]), tiny_batch.images, tiny_batch.labels, "depth_width", arch=archs[0],
                          space="pit") == pytest.approx(math.log(sp.arch_scalars(archs[0])["depth"]
                                                                 * sp.arch_scalars(archs[0])["width"]), rel=1e-6)
    got = autoprox.score_population([build(a) for a in archs], tiny_batch.images, tiny_batch.labels,
                                    "evolved_c100_kd", archs=archs, space="pit",
                                    stats=StatsConfig(act_samples=2, act_tokens=4))
    assert got == pytest.approx(score_named(backend, ["evolved_c100_kd"])[0].tolist())
    with pytest.raises(ValueError, match="pass arch= and space="):
        autoprox.score(build(archs[0]), tiny_batch.images, tiny_batch.labels, "width")
    with pytest.raises(ValueError, match="score_population"):
        autoprox.score(build(archs[0]), tiny_batch.images, tiny_batch.labels, "evolved_c100_kd")


def test_cli_exports_a_fused_proxy(tmp_path, capsys):
    assert main(["export", "evolved_c100_kd", "--format", "latex"]) == 0
    assert "rank_sum" in capsys.readouterr().out
    assert main(["export", "evolved_c100_kd", "--format", "python", "--out", str(tmp_path / "f.py")]) == 0
    assert "def score_population" in (tmp_path / "f.py").read_text()


@pytest.mark.parametrize("name", ['x"""; import os; os.environ["AUTOPROX_PWNED"] = "1"; """',
                                  "x'''\\\n\"\"\"\\\"", "a\\u0000b\\\\"])
def test_any_proxy_name_exports_a_file_that_compiles_and_runs_nothing_else(name, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOPROX_PWNED", raising=False)
    p = GraphProxy.from_text(name, "agg_sum(weight_norm)")
    src = export(p, "python")
    compile(src, "p.py", "exec")
    (tmp_path / "p.py").write_text(src)
    mod = _load_module(tmp_path / "p.py", "exported_hostile")
    assert mod.NAME == name
    assert "AUTOPROX_PWNED" not in os.environ
