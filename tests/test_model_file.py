"""``autoprox build``: a found arch as a loadable model and its JSON config."""
import importlib.util
import json

import pytest
import torch
import yaml

from autoprox.cli.main import main
from autoprox.spaces import get_space, list_spaces

from conftest import SMALL


def _load(path):
    spec = importlib.util.spec_from_file_location(f"built_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("space", list_spaces())
def test_model_files_build_the_engines_model(space, tmp_path):
    arch = SMALL[space]
    want = get_space(space).build(arch, num_classes=10, img_size=32, seed=3)
    common = ["--space", space, json.dumps(arch), "--num-classes", "10", "--img-size", "32", "--seed", "3"]
    assert main(["build", *common, "--out", str(tmp_path / "m.py")]) == 0
    got = _load(tmp_path / "m.py").build()
    ws, gs = want.state_dict(), got.state_dict()
    assert ws.keys() == gs.keys() and all(torch.equal(ws[k], gs[k]) for k in ws)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(want.eval()(x), got.eval()(x))
    assert main(["build", *common, "--out", str(tmp_path / "m.pt")]) == 0
    fresh = get_space(space).build(arch, num_classes=10, img_size=32, seed=0)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt"))
    assert torch.allclose(fresh.eval()(x), want(x))
    cfg = json.loads((tmp_path / "m.json").read_text())
    assert cfg["space"] == space and cfg["seed"] == 3 and cfg["model"] == "m.pt"
    assert cfg["num_params"] == sum(p.numel() for p in want.parameters())


@pytest.mark.parametrize("builder", ["autoformer-supernet", "autoformer"])
def test_model_files_of_a_declared_space(builder, tmp_path):
    """A space declared in YAML (the README's tiny-narrow.yaml): its model file builds the engine's
    model (it failed with "module 'abc' has no attribute 'PATCH'": the declared class is made at run time)."""
    import random
    space = tmp_path / "narrow.yaml"
    space.write_text(yaml.safe_dump({"name": "narrow", "builder": builder, "hidden_dim": [192], "depth": [2],
                                     "mlp_ratio": [2.0], "num_heads": [3]}))
    arch = get_space(str(space)).sample(random.Random(0))
    want = get_space(str(space)).build(arch, num_classes=10, img_size=32, seed=1)
    assert main(["build", "--space", str(space), json.dumps(arch), "--num-classes", "10", "--img-size", "32",
                 "--seed", "1", "--out", str(tmp_path / "m.py")]) == 0
    got = _load(tmp_path / "m.py").build()
    ws, gs = want.state_dict(), got.state_dict()
    assert ws.keys() == gs.keys() and all(torch.equal(ws[k], gs[k]) for k in ws)


def test_build_takes_a_rank_of_a_search_result(tmp_path, capsys):
    top = [{"rank": i + 1, "arch": a} for i, a in
           enumerate([SMALL["pit"], {**SMALL["pit"], "base_dim": 24}])]
    (tmp_path / "result.yaml").write_text(yaml.safe_dump({"space": "pit", "top": top}))
    assert main(["build", str(tmp_path / "result.yaml"), "--rank", "2", "--out", str(tmp_path / "b.py"),
                 "--img-size", "32"]) == 0
    assert _load(tmp_path / "b.py").ARCH["base_dim"] == 24
    assert main(["build", str(tmp_path / "result.yaml"), "--rank", "3", "--out", str(tmp_path / "c.py")]) == 2
    assert "ranks 1 to 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv,err", [
    (["--space", "pit", "{bad"], "neither JSON"),
    (["{\"base_dim\": 16}"], "needs --space"),
    (["--space", "pit", json.dumps({**SMALL["pit"], "base_dim": 17})], "base_dim=17"),
    (["--space", "pit", json.dumps(SMALL["pit"]), "--out-ext"], "")])
def test_bad_build_input_is_one_line_and_writes_nothing(argv, err, tmp_path, capsys):
    out = tmp_path / "m.txt" if argv[-1] == "--out-ext" else tmp_path / "m.py"
    argv = [a for a in argv if a != "--out-ext"]
    assert main(["build", *argv, "--out", str(out)]) == 2
    msg = capsys.readouterr().err.strip()
    assert len(msg.splitlines()) == 1 and (err in msg if err else ".pt" in msg)
    assert list(tmp_path.iterdir()) == []
