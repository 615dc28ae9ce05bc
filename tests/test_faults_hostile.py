"""Fault injection, continued: hostile inputs. Nesting at and beyond the depth limits (expressions,
graph files, JSON, YAML), special files in every place autoprox reads (refused before they are
opened), finite extremes in a benchmark file, and a failed run's folder removed. Each case is one
line on stderr, exit 2, nothing under --out; the category in the results table is ``hostile``."""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

import autoprox.core.io as io
from autoprox.cli.main import main
from autoprox.core.config import MAX_DEPTH, BoundedLoader, load_json_text, load_yaml_text
from autoprox.proxy.graph import MAX_NODES
from autoprox.stats.cache import StatsCache

PIT_A = {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}
PIT_B = {"base_dim": 24, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}
PIT_C = {"base_dim": 32, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}
BENCH = ["bench", "--space", "pit", "--proxy", "params"]


def _one_line(capsys, says: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ": error:" in ln]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in err, err[-2000:]
    return lines[0]


# ---------------------------------------------------------------------------------- depth limits
def chain_graph(ops: int) -> dict:
    """A proxy file whose graph is a chain: ``ops - 1`` abs nodes over a leaf, then agg_sum (depth ``ops``)."""
    nodes = [{"id": "n0", "stat": "weight"}] + [{"id": f"n{i}", "op": "abs", "inputs": [f"n{i - 1}"]}
                                                 for i in range(1, ops)]
    nodes.append({"id": "out", "op": "agg_sum", "inputs": [f"n{ops - 1}"]})
    return {"name": "chain", "graph": {"nodes": nodes, "output": "out"}}


@pytest.mark.parametrize("ops", [MAX_DEPTH, MAX_DEPTH + 1, 2000])
def test_hostile_graph_file_chain(ops, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(chain_graph(ops)))
    code = main(["export", str(tmp_path / "p.yaml"), "--format", "text"])
    if ops <= MAX_DEPTH:  # at the limit: read and exported
        assert code == 0 and capsys.readouterr().out.count("|") == 2 * (ops - 1)
    else:
        assert code == 2
        _one_line(capsys, f"graph nested more than {MAX_DEPTH} ops deep")


def test_hostile_graph_file_that_doubles_at_each_step(tmp_path, capsys):
    """40 shared pairs: a graph of 80 nodes whose expression written out has ~2^40 nodes."""
    nodes = [{"id": "n0", "stat": "weight"}]
    for i in range(1, 41):
        nodes += [{"id": f"a{i}", "op": "abs", "inputs": [f"n{i - 1}"]},
                  {"id": f"n{i}", "op": "element_wise_sum", "inputs": [f"n{i - 1}", f"a{i}"]}]
    nodes.append({"id": "out", "op": "agg_sum", "inputs": ["n40"]})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "d", "graph": {"nodes": nodes, "output": "out"}}))
    assert main(["export", str(tmp_path / "p.yaml")]) == 2
    _one_line(capsys, f"grows beyond {MAX_NODES:,} nodes")


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_hostile_expression_at_and_beyond_the_limit(depth, capsys):
    text = "agg_sum(" + "abs(" * (depth - 1) + "weight" + ")" * depth
    code = main(["export", text, "--format", "text"])
    if depth <= MAX_DEPTH:
        assert code == 0 and capsys.readouterr().out.count("|") == 2 * (depth - 1)
    else:
        assert code == 2
        _one_line(capsys, f"nested {depth} deep")


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 200_000])
def test_hostile_json_at_and_beyond_the_limit(depth, tmp_path, capsys):
    """The depth is counted before the (recursive) parser runs: no RecursionError is ever raised."""
    text = "[" * depth + "]" * depth
    if depth <= MAX_DEPTH:
        assert load_json_text(text, "x") is not None
    (tmp_path / "b.json").write_text(text)
    assert main(BENCH + ["--bench", str(tmp_path / "b.json"), "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys, "b.json")
    assert ("nested too deep" in line) == (depth > MAX_DEPTH), line
    assert not (tmp_path / "o").exists()


def test_hostile_json_brackets_in_strings_do_not_count():
    deep_string = json.dumps({"a": "[" * 500 + "\\\"{" * 100})
    assert load_json_text(deep_string, "x")["a"].startswith("[[[")


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_hostile_yaml_at_and_beyond_the_limit(depth, tmp_path, capsys):
    nested = "[" * (depth - 1) + "]" * (depth - 1)  # the document's mapping is the first level
    if depth <= MAX_DEPTH:
        assert load_yaml_text(f"space: {nested}\n") == {"space": json.loads(nested)}
    (tmp_path / "c.yaml").write_text(f"space: {nested}\n")
    assert main(["bench", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys, "c.yaml")
    assert (f"nested deeper than {BoundedLoader.MAX_DEPTH}" in line) == (depth > MAX_DEPTH), line


@pytest.mark.parametrize("where", ["config", "proxy-file"])
def test_hostile_mixed_integer_and_string_unknown_keys(where, tmp_path, capsys):
    if where == "config":
        (tmp_path / "c.yaml").write_text("space: pit\n1: a\nfoo: b\n2026-12-06: c\n")
        argv = ["bench", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]
    else:
        (tmp_path / "p.yaml").write_text("expression: agg_sum(abs(weight))\n1: a\nfoo: b\n")
        argv = ["export", str(tmp_path / "p.yaml")]
    assert main(argv) == 2
    _one_line(capsys, "unknown key(s) [")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------- special files
def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    os.chdir(p.parent)  # bound by its short name: a socket's path may hold only ~108 bytes
    try:
        s.bind(p.name)
    finally:
        os.chdir(here)
    _SOCKETS.append(s)


_SOCKETS: list = []
SPECIAL = {  # kind -> (maker, words of the refusal)
    "fifo": (_fifo, "is a FIFO"),
    "socket": (_socket, "is a socket"),
    "device": (lambda p: p.symlink_to("/dev/zero"), "is a character device"),  # reading it never ends
    "symlink-loop": (lambda p: p.symlink_to(p.name), "is a symlink loop"),
}


def _pngs(root: Path, n: int) -> None:
    from PIL import Image
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")


def _place_bench(t: Path, make) -> list[str]:
    make(t / "b.json")
    return BENCH + ["--bench", str(t / "b.json"), "--out", str(t / "o")]


def _place_config(t: Path, make) -> list[str]:
    make(t / "c.yaml")
    return ["bench", "--config", str(t / "c.yaml"), "--out", str(t / "o")]


def _place_proxy(t: Path, make) -> list[str]:
    make(t / "p.yaml")
    return ["bench", "--space", "pit", "--proxy", str(t / "p.yaml"), "--out", str(t / "o")]


def _place_image(t: Path, make) -> list[str]:
    _pngs(t / "imgs", 4)
    make(t / "imgs" / "c1" / "zz.png")
    return ["bench", "--space", "pit", "--proxy", "snip", "--limit", "2", "--batch-source", "folder",
            "--batch-path", str(t / "imgs"), "--batch-size", "2", "--resolution", "32", "--num-classes", "2",
            "--cache-dir", str(t / "cache"), "--out", str(t / "o")]


def _place_teacher(t: Path, make) -> list[str]:
    make(t / "teacher.pt")
    return ["bench", "--space", "pit", "--proxy", "tvt", "--limit", "2", "--teacher", str(t / "teacher.pt"),
            "--batch-size", "2", "--resolution", "32", "--num-classes", "2", "--cache-dir", str(t / "cache"),
            "--out", str(t / "o")]


def _place_cifar(t: Path, make) -> list[str]:
    make(t / "train")
    return ["bench", "--space", "pit", "--proxy", "snip", "--limit", "2", "--batch-source", "cifar100",
            "--batch-path", str(t / "train"), "--cache-dir", str(t / "cache"), "--out", str(t / "o")]


def _place_space(t: Path, make) -> list[str]:
    make(t / "space.yaml")
    return ["bench", "--space", str(t / "space.yaml"), "--proxy", "params", "--out", str(t / "o")]


def _place_search_state(t: Path, make) -> list[str]:
    (t / "s").mkdir()
    (t / "s" / ".autoprox-run").write_text('{"verb": "search"}\n')
    make(t / "s" / "state.json")
    return ["search", "--space", "pit", "--proxy", "params", "--budget", "4", "--out", str(t / "s"), "--resume"]


PLACES = {"bench-file": _place_bench, "config": _place_config, "proxy-file": _place_proxy,
          "batch-image": _place_image, "cifar-file": _place_cifar, "teacher": _place_teacher,
          "space-file": _place_space, "search-state": _place_search_state}


@pytest.mark.parametrize("kind", list(SPECIAL))
@pytest.mark.parametrize("place", list(PLACES))
def test_hostile_special_file(place, kind, tmp_path, capsys):
    """Run in a thread: a regression waits on the FIFO (or reads /dev/zero) forever; fail, do not hang."""
    make, says = SPECIAL[kind]
    argv = PLACES[place](tmp_path, make)
    got: list = []
    t = threading.Thread(target=lambda: got.append(main(argv)), daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), f"reading a {kind} as the {place} hangs"
    assert got == [2]
    _one_line(capsys, says)
    assert not (tmp_path / "o").exists()
    for s in _SOCKETS:
        s.close()
    _SOCKETS.clear()


@pytest.mark.parametrize("kind", list(SPECIAL))
def test_hostile_special_file_in_a_cache_entrys_place_is_a_miss_never_opened(kind, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    entry = StatsCache(root).path("pit", "ab" * 16)
    entry.parent.mkdir(parents=True)
    SPECIAL[kind][0](entry)
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **kw: opened.append(str(p)) or real_open(p, *a, **kw))
    assert StatsCache(root).load("pit", "ab" * 16) is None
    assert str(entry) not in opened  # refused from its status alone
    for s in _SOCKETS:
        s.close()
    _SOCKETS.clear()


def test_hostile_regular_files_behind_links_are_read(tmp_path):
    (tmp_path / "real.json").write_text("[1]")
    (tmp_path / "link.json").symlink_to("real.json")
    assert io.read_regular(tmp_path / "link.json", "file") == b"[1]"


# ---------------------------------------------------------------------------------- finite extremes
@pytest.mark.parametrize("value", [1e308, -1e308, 1.7976931348623157e308, 1e13])
def test_hostile_extreme_accuracies_are_refused_naming_record_and_field(value, tmp_path, capsys):
    recs = [{"arch": PIT_A, "c100_kd_acc": 60.0}, {"arch": PIT_B, "c100_kd_acc": value},
            {"arch": PIT_C, "c100_kd_acc": 70.0}]
    (tmp_path / "b.json").write_text(json.dumps(recs))
    assert main(BENCH + ["--bench", str(tmp_path / "b.json"), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, "record 1 key 'c100_kd_acc' is")
    assert not (tmp_path / "o").exists()


def test_hostile_large_accuracies_within_the_bound_are_scored(tmp_path, capsys):
    """At +-1e12 the correlations are those of the same ranking in ordinary units."""
    out = {}
    for scale in (1.0, 1e12 / 70.0):
        recs = [{"arch": a, "c100_kd_acc": v * scale} for a, v in ((PIT_A, 60.0), (PIT_B, -70.0), (PIT_C, 70.0))]
        (tmp_path / "b.json").write_text(json.dumps(recs))
        assert main(BENCH + ["--bench", str(tmp_path / "b.json"), "--out", str(tmp_path / f"o{scale:g}")]) == 0
        out[scale] = (tmp_path / f"o{scale:g}" / "bench.csv").read_text()
    assert len(set(out.values())) == 1
    row = next(r for r in csv.DictReader(out[1.0].splitlines()) if r["dataset"] == "c100_kd")
    assert [row[k] for k in ("kendall", "spearman")] == ["0.3333", "0.5000"]


# ---------------------------------------------------------------------------------- leftovers
def _full_disk_on(monkeypatch, name: str) -> None:
    real = io.write_temp

    def write(path, data):
        if path.name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)
    monkeypatch.setattr(io, "write_temp", write)


@pytest.mark.parametrize("name", [".autoprox-run", "bench.csv", "jcm.png"])
def test_hostile_failed_bench_removes_the_folders_it_made(name, tmp_path, capsys, monkeypatch):
    out = tmp_path / "a" / "b" / "out"
    _full_disk_on(monkeypatch, name)
    assert main(BENCH + ["--limit", "4", "--out", str(out)]) == 2
    _one_line(capsys, "No space left on device")
    assert not (tmp_path / "a").exists() and os.listdir(tmp_path) == []


def test_hostile_failed_bench_leaves_an_existing_folder_as_it_was(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _full_disk_on(monkeypatch, "jcm.png")
    assert main(BENCH + ["--limit", "4", "--out", str(out)]) == 2
    assert sorted(os.listdir(out)) == [".autoprox-lock", ".autoprox-run", "notes.txt"]  # not emptied
    shutil.rmtree(out)
    out.mkdir()
    assert main(BENCH + ["--limit", "4", "--out", str(out)]) == 2
    assert out.is_dir() and os.listdir(out) == []  # found empty, left empty
