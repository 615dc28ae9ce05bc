"""``evolve --transfer``: each benchmark held out in turn, the pick scored zero-shot beside the alternatives."""
import json

import numpy as np
import pytest

from autoprox.core.config import ConfigError
from autoprox.eval import alternatives
from autoprox.discovery.objective import Objective, ObjectiveConfig
from autoprox.discovery.transfer import transfer, transfer_runs


def test_per_space_targets_and_weights(two_spaces):
    obj = Objective(two_spaces.objective, ["weight"])
    assert [list(sd.targets) for sd in obj.spaces] == [["c100_kd", "flower_kd", "chaoyang_kd"], ["c100_kd"]]
    obj.open()
    try:
        rec = obj.evaluate(["num_params"])[0]
    finally:
        obj.close()
    per = rec["per_space"]
    assert rec["train"] == pytest.approx((2 * per["pit"]["train"] + per["autoformer"]["train"]) / 3)
    with pytest.raises(ValueError, match=r"objective.weights names space\(s\) \['vit'\]"):
        ObjectiveConfig(spaces=("pit",), weights={"vit": 1.0})
    with pytest.raises(ConfigError, match="weights must lie in"):
        ObjectiveConfig(spaces=("pit",), weights={"pit": 0.0})


def test_transfer_holds_out_each_benchmark_and_scores_the_alternatives_on_it(two_spaces, tmp_path, small_zoo):
    runs = transfer_runs(two_spaces)
    assert {k: v.objective.spaces for k, v in runs.items()} == {"pit": ("autoformer",), "autoformer": ("pit",)}
    assert runs["pit"].objective.space_targets == {"autoformer": ("c100_kd",)} and runs["pit"].objective.weights == {}
    rows = transfer(two_spaces, tmp_path / "t")
    assert [r["held_out"] for r in rows] == ["pit", "autoformer"]
    pit = rows[0]
    assert set(pit["scores"]) == {"pick", *alternatives.NAMES} - {"surrogate"}  # pit's fields are not autoformer's
    assert list(pit["targets"]) == ["c100_kd", "flower_kd", "chaoyang_kd"] and len(pit["scores"]["pick"]) == 10
    # the pick's zero-shot scores are the source run's oriented pick on the held-out archs
    from autoprox.discovery.report import oriented
    from autoprox.proxy.spec import resolve
    src = (tmp_path / "t" / "without-pit" / "best.yaml")
    assert resolve(str(src)).hash == oriented({"expression": pit["pick"], "sign": pit["sign"]}, "x").hash
    np.testing.assert_allclose(pit["scores"]["depth"], [sum(a["depth"]) for a in _pit_archs()])
    text = (tmp_path / "t" / "transfer.md").read_text()
    assert text.count("\n| pit | autoformer | ") == 1 and text.count("\n| autoformer | pit | ") == 1
    line = next(ln for ln in text.splitlines() if ln.startswith("| pit | autoformer | "))
    want = alternatives.jcm_of(np.array(pit["scores"]["ranker"]), {t: np.array(y) for t, y in pit["targets"].items()})
    assert line.split(" | ")[2 + 1 + list(alternatives.NAMES).index("ranker")].startswith(f"{want:.3f} [")
    pick_cell = line.split(" | ")[2]  # the matrix's interval is the detail table's, from the same resamples
    assert f"| pick | {pick_cell} |" in text and pick_cell.count("[") == 1
    assert json.loads((tmp_path / "t" / "transfer.json").read_text()) == rows
    again = transfer(two_spaces, tmp_path / "t", resume=True)  # finished runs reload: the same figures
    assert again == rows


def test_transfer_needs_two_benchmarks(two_spaces):
    import dataclasses
    one = dataclasses.replace(two_spaces, objective=dataclasses.replace(
        two_spaces.objective, spaces=("pit",), space_targets={}, weights={}))
    with pytest.raises(ConfigError, match="at least 2 spaces"):
        transfer_runs(one)


def _pit_archs():
    from autoprox.data.benchmark import load_archs
    return load_archs("pit", limit=10)[1]


def test_cli_transfer_refuses_one_space_and_cv_in_one_line(tmp_path, capsys):
    from autoprox.cli.main import main
    assert main(["evolve", "--config", "runs/quick.yaml", "--transfer", "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "autoprox evolve: error: --transfer needs an objective with at least 2 spaces, got ['pit']"]
    assert main(["evolve", "--config", "runs/transfer.yaml", "--transfer", "--cv", "5", "--out", str(tmp_path / "t")]) == 2
    assert "separate runs" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_weighted_spaces_intervals_centre_on_the_objectives_own_figures(two_spaces, tmp_path, small_zoo):
    """``objective.weights`` weighs the spaces in a fold's JCM; its bootstrap interval and the paired
    difference vs #params must pool the spaces the same way (they averaged them evenly before)."""
    from autoprox.discovery.run import evolve
    doc = evolve(two_spaces, tmp_path / "w").report
    pick, iv = doc["pick"], doc["intervals"]
    per = pick["per_space"]
    assert pick["val"] == pytest.approx((2 * per["pit"]["val"] + per["autoformer"]["val"]) / 3)
    for fold in ("train", "val"):
        assert iv["pick"][fold]["estimate"] == pytest.approx(pick[fold])
        assert iv["pick"][fold]["lo"] <= pick[fold] <= iv["pick"][fold]["hi"]
    params = dict(doc["zoo"])["params"]
    assert iv["pick"]["val_diff"]["estimate"] == pytest.approx(pick["val"] - params["val"])
