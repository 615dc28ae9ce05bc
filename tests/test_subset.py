"""A benchmark's pre-registered subset (``--subset N``): the N records whose sha256 of
"<space>/<record id>" is lowest, kept in file order with their own accuracies."""
import csv
import hashlib
import json

import pytest

from autoprox.cli.main import main
from autoprox.data.benchmark import BenchmarkError, load_archs
from tests.test_native_bench import native_records, write


def _expected_ids(records: dict, name: str, n: int) -> list[str]:
    chosen = sorted(records, key=lambda k: hashlib.sha256(f"{name}/{k}".encode()).hexdigest())[:n]
    return [k for k in records if k in chosen]


def test_subset_is_the_lowest_hashes_in_file_order_with_their_accuracies(tmp_path):
    recs = native_records("autoformer-tiny", 12)
    path = write(tmp_path, recs, "tiny.json")
    b, archs, _ = load_archs("autoformer-tiny", path, subset=5)
    ids = _expected_ids(recs, "autoformer-tiny", 5)
    assert list(b.ids) == ids and ids != list(recs)[:5]
    assert [a["depth"] for a in archs] == [recs[k]["net_setting"]["layer_num"] for k in ids]
    assert list(b.values("imagenet")) == [recs[k]["performance"]["Imagenet"]["clean"] for k in ids]
    # the file's name is not part of the rule (a download keeps its own name); the space is
    other = load_archs("autoformer-tiny", write(tmp_path, recs, "other.json"), subset=5)[0]
    assert list(other.ids) == ids
    small = load_archs("autoformer-small", write(tmp_path, native_records("autoformer-small", 12), "s.json"), subset=5)
    assert list(small[0].ids) == _expected_ids(dict.fromkeys(native_records("autoformer-small", 12)),
                                               "autoformer-small", 5)


def test_subset_of_a_list_file_hashes_positions(tmp_path):
    b, _, _ = load_archs("autoformer", None, subset=7)
    rows = json.loads(open(b.source).read())
    pos = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"autoformer/{i}".encode()).hexdigest())[:7]
    assert [a["c100_kd"] for a in b.accs] == [rows[i]["c100_kd_acc"] for i in sorted(pos)]


def test_subset_below_two_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="subset must be >= 2"):
        load_archs("autoformer-tiny", write(tmp_path, native_records("autoformer-tiny", 4)), subset=1)


def test_subset_larger_than_the_file_is_refused_before_anything_is_written(tmp_path, capsys):
    path, out = write(tmp_path, native_records("autoformer-tiny", 4)), tmp_path / "out"
    assert main(["bench", "--space", "autoformer-tiny", "--bench", path, "--proxy", "params",
                 "--subset", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "subset 5 is more than its 4 records" in err[0]
    assert not out.exists()


def test_cli_bench_subset_scores_those_archs_only(tmp_path):
    recs = native_records("autoformer-tiny", 9)
    path, out = write(tmp_path, recs, "tiny.json"), tmp_path / "out"
    assert main(["bench", "--space", "autoformer-tiny", "--bench", path, "--proxy", "params",
                 "--subset", "4", "--out", str(out)]) == 0
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    ids = _expected_ids(recs, "autoformer-tiny", 4)
    assert [float(r["imagenet"]) for r in rows] == pytest.approx(
        [recs[k]["performance"]["Imagenet"]["clean"] for k in ids])
    assert "subset: 4" in (out / "config.yaml").read_text()
