"""OoD-ViT-NAS's own JSON format, read wherever a benchmark file is: archs from ``net_setting``,
targets ``imagenet`` and ``imagenet_<corruption>_<level>``; bad records are one line naming them."""
import json
import random

import pytest

from autoprox.cli.main import main
from autoprox.data.benchmark import BenchmarkError, load_archs, load_benchmark, target_name
from autoprox.spaces import get_space


def native_records(space: str, n: int, seed: int = 0, corruption: bool = True, smallest: bool = False) -> dict:
    """``n`` distinct records of ``space`` in OoD-ViT-NAS's format (made up accuracies); with
    ``smallest``, every arch at the space's least depth, width and MLP ratio (only the heads vary)."""
    sp, rng, out = get_space(space), random.Random(seed), {}
    while len(out) < n:
        a = sp.sample(rng)
        if smallest:
            depth = min(sp.DEPTHS)
            a = {"hidden_dim": min(sp.DIMS), "depth": depth, "mlp_ratio": [min(sp.RATIOS)] * depth,
                 "num_heads": [rng.choice(sp.HEADS) for _ in range(depth)]}
        perf = {"clean": 70 + rng.random() * 5}
        if corruption:
            perf["corruption"] = {"Gaussian Noise": {"1": 60 + rng.random() * 5}}
        out[str(2 * len(out) + 1)] = {
            "net_setting": {"layer_num": a["depth"], "mlp_ratio": a["mlp_ratio"], "num_heads": a["num_heads"],
                            "embed_dim": [a["hidden_dim"]] * a["depth"]},
            "performance": {"Imagenet": perf},
            "params": sp.num_params(a, num_classes=1000) / 1e6, "flops": 1.0}
    return out


def write(tmp_path, records, name="ood.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(records))
    return str(p)


def test_native_file_becomes_archs_and_targets(tmp_path):
    recs = native_records("autoformer-tiny", 6)
    b, archs, targets = load_archs("autoformer-tiny", write(tmp_path, recs))
    assert targets == ["imagenet"]  # the default: clean top-1
    assert b.targets() == ["imagenet", "imagenet_gaussian_noise_1"]
    first = recs["1"]
    assert archs[0] == {"hidden_dim": first["net_setting"]["embed_dim"][0], "depth": first["net_setting"]["layer_num"],
                        "mlp_ratio": [float(x) for x in first["net_setting"]["mlp_ratio"]],
                        "num_heads": first["net_setting"]["num_heads"]}
    assert list(b.values("imagenet_gaussian_noise_1")) == [r["performance"]["Imagenet"]["corruption"]
                                                          ["Gaussian Noise"]["1"] for r in recs.values()]
    assert b.record(2) == "record '5'"


def test_target_names_are_typeable():
    assert target_name("Imagenet") == "imagenet"
    assert target_name("Imagenet", "Gaussian Noise", "1") == "imagenet_gaussian_noise_1"
    assert target_name("ImageNet-R", "JPEG compression (q)", 3) == "imagenet_r_jpeg_compression_q_3"


@pytest.mark.parametrize("edit,msg", [
    (lambda r: r["3"]["net_setting"].pop("num_heads"), r"record '3': net_setting must hold"),
    (lambda r: r["3"]["net_setting"]["embed_dim"].__setitem__(1, 216), r"record '3': embed_dim differs"),
    (lambda r: r["3"]["net_setting"]["mlp_ratio"].pop(), r"record '3': net_setting mlp_ratio must be a list"),
    (lambda r: r["3"].pop("performance"), r"record '3': no 'performance'"),
    (lambda r: r["3"]["performance"]["Imagenet"].__setitem__("clean", "75"), r"record '3' Imagenet clean is not"),
    (lambda r: r["3"]["performance"]["Imagenet"].__setitem__("clean", True), r"record '3' Imagenet clean is not"),
    (lambda r: r["3"]["performance"]["Imagenet"].pop("corruption"), r"record '3' has no 'imagenet_gaussian"),
    (lambda r: r["3"]["net_setting"].__setitem__("num_heads", [9] * r["3"]["net_setting"]["layer_num"]),
     r"record '3': num_heads\[0\]=9 is outside"),
    (lambda r: r["3"].__setitem__("params", 1.5), r"record '3': the file gives 1.5 M params but space"),
    (lambda r: r.__setitem__("3", r["1"]), r"record '1' and record '3' are the same arch"),
])
def test_bad_records_name_the_record(tmp_path, edit, msg):
    recs = native_records("autoformer-tiny", 4)
    edit(recs)
    with pytest.raises(BenchmarkError, match=msg):
        load_archs("autoformer-tiny", write(tmp_path, recs))


def test_the_wrong_space_is_named_with_the_right_one(tmp_path):
    path = write(tmp_path, native_records("autoformer-tiny", 3))
    with pytest.raises(BenchmarkError, match="builds .* M; its count is that of space 'autoformer-tiny'"):
        load_archs("autoformer", path)


def test_a_file_without_params_is_read(tmp_path):
    recs = native_records("autoformer-small", 3, corruption=False)
    for r in recs.values():
        del r["params"]
    b = load_benchmark("autoformer-small", write(tmp_path, recs))
    assert b.targets() == ["imagenet"] and b.params == (None, None, None)


def test_cli_bench_reads_the_native_file(tmp_path, tiny_scoring):
    path = write(tmp_path, native_records("autoformer-tiny", 5))
    out = tmp_path / "out"
    argv = ["bench", "--space", "autoformer-tiny", "--bench", path, "--proxy", "params", "depth_width",
            "--targets", "imagenet,imagenet_gaussian_noise_1", "--out", str(out)]
    assert main(argv) == 0
    rows = (out / "bench.csv").read_text().splitlines()
    assert any(r.startswith("params,imagenet_gaussian_noise_1,5,") for r in rows), rows


def test_cli_bad_native_record_is_one_line_and_writes_nothing(tmp_path, capsys):
    recs = native_records("autoformer-tiny", 4)
    recs["5"]["net_setting"]["embed_dim"][0] = 240
    out = tmp_path / "out"
    assert main(["bench", "--space", "autoformer-tiny", "--bench", write(tmp_path, recs), "--proxy", "params",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "record '5': embed_dim differs" in err[0]
    assert not out.exists()
