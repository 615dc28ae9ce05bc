"""Fault injection, bad input: every mistake below is one line on stderr (no
traceback), exit 2, and nothing under --out. Companion of ``test_faults.py``; the category
in the results table is ``badinput``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from autoprox.cli.main import main

def _bench(tmp, records) -> str:
    (tmp / "b.json").write_text(json.dumps(records))
    return str(tmp / "b.json")


PIT_A = {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}
PIT_B = {"base_dim": 24, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}
EVO_OK = {"population": 4, "steps": 1, "offspring": 4, "seed_proxies": ["params"],
          "objective": {"spaces": ["pit"], "limit": 8, "scoring": {"batch": {"size": 4, "resolution": 32}}}}


def _evolve_cfg(tmp, **over) -> list[str]:
    doc = json.loads(json.dumps(EVO_OK))
    for path, v in over.items():
        d = doc
        *head, last = path.split("__")
        for k in head:
            d = d.setdefault(k, {})
        d[last] = v
    (tmp / "e.yaml").write_text(yaml.safe_dump(doc))
    return ["evolve", "--config", str(tmp / "e.yaml")]


def _file(tmp, name: str, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


GARBAGE = bytes(range(256)) * 4
BENCH = ["bench", "--space", "pit", "--proxy", "params"]
SEARCH = ["search", "--space", "pit", "--proxy", "params", "--budget", "4"]
BAD_INPUTS = [  # id, argv builder (tmp -> argv without --out), text the one line must contain
    ("bench-limit-negative", lambda t: BENCH + ["--limit", "-3"], "limit must be >= 1"),
    ("bench-limit-zero", lambda t: BENCH + ["--limit", "0"], "limit must be >= 1"),
    ("bench-limit-one", lambda t: BENCH + ["--limit", "1"], "cannot rank"),
    ("bench-constant-accuracy", lambda t: BENCH + ["--bench", _bench(t, [{"arch": PIT_A, "x_acc": 1.0},
                                                                          {"arch": PIT_B, "x_acc": 1.0}])],
     "cannot rank"),
    ("bench-duplicate-archs", lambda t: BENCH + ["--bench", _bench(t, [{"arch": PIT_A, "x_acc": 1.0},
                                                                        {"arch": PIT_B, "x_acc": 2.0},
                                                                        {"arch": PIT_A, "x_acc": 3.0}])],
     "record 0 and record 2"),
    ("bench-missing-target", lambda t: BENCH + ["--bench", _bench(t, [{"arch": PIT_A, "x_acc": 1.0, "y_acc": 2.0},
                                                                       {"arch": PIT_B, "x_acc": 2.0}])],
     "record 1"),
    ("bench-empty-config", lambda t: ["bench", "--config", _file(t, "c.yaml", b"")], "is empty"),
    ("bench-garbage-bench-file", lambda t: BENCH + ["--bench", _file(t, "g.json", GARBAGE)], "g.json"),
    ("bench-garbage-config", lambda t: ["bench", "--config", _file(t, "g.yaml", GARBAGE)], "g.yaml"),
    ("bench-garbage-proxy-file", lambda t: ["bench", "--space", "pit", "--proxy",
                                            _file(t, "p.yaml", GARBAGE)], "p.yaml"),
    ("bench-graph-hello", lambda t: ["bench", "--space", "pit", "--proxy",
                                     _file(t, "h.yaml", b"name: h\ngraph: hello\n")], "h.yaml"),
    ("bench-device-tpu9", lambda t: BENCH + ["--device", "tpu9"], "tpu9"),
    ("bench-device-cuda-without-cuda", lambda t: ["bench", "--space", "pit", "--proxy", "snip", "--device", "cuda",
                                                  "--cache-dir", str(t / "c")], "CUDA is not available"),
    ("bench-workers-zero", lambda t: BENCH + ["--backend", "ray", "--workers", "0"], "--workers must be"),
    ("bench-workers-negative", lambda t: BENCH + ["--backend", "ray", "--workers", "-1"], "--workers must be"),
    ("bench-connect-timeout-zero", lambda t: BENCH + ["--connect-timeout", "0"], "--connect-timeout"),
    ("bench-batch-size-one", lambda t: BENCH + ["--batch-size", "1"], "batch.size must be >= 2"),
    ("bench-resolution-8", lambda t: BENCH + ["--resolution", "8"], "batch.resolution must be >= 16"),
    ("bench-evaluator-unknown", lambda t: BENCH + ["--evaluator", "fast"], "evaluator must be one of batched"),
    ("bench-score-memory-negative", lambda t: BENCH + ["--score-memory-mb", "-1"], "score_memory_mb must be >= 0"),
    ("evolve-evaluator-unknown", lambda t: _evolve_cfg(t, objective__scoring__evaluator="gpu"), "evaluator must be"),
    ("stats-limit-negative", lambda t: ["stats", "--space", "pit", "--limit", "-3"], "limit must be >= 1"),
    ("evolve-cxpb-2", lambda t: _evolve_cfg(t, cxpb=2.0), "cxpb must be in [0, 1], got 2.0"),
    ("evolve-cxpb-negative", lambda t: _evolve_cfg(t, cxpb=-0.5), "cxpb must be in [0, 1]"),
    ("evolve-population-1", lambda t: _evolve_cfg(t, population=1), "population must be >= 2"),
    ("evolve-steps-negative", lambda t: _evolve_cfg(t, steps=-1), "steps must be >= 0"),
    ("evolve-pool-ratio-zero", lambda t: _evolve_cfg(t, pool_ratio=0), "pool_ratio must be in (0, 1]"),
    ("evolve-margin-nan", lambda t: _evolve_cfg(t, margin=float("nan")), "margin must be in [-2, 2]"),
    ("evolve-mutants-zero", lambda t: _evolve_cfg(t, mutants=0), "mutants must be >= 1"),
    ("evolve-hall-of-fame-zero", lambda t: _evolve_cfg(t, hall_of_fame=0), "hall_of_fame must be >= 1"),
    ("evolve-gene-prob", lambda t: _evolve_cfg(t, variation__gene_prob=1.5), "gene_prob must be in [0, 1]"),
    ("evolve-max-depth", lambda t: _evolve_cfg(t, variation__max_depth=1), "max_depth must be >= 3"),
    ("evolve-objective-limit", lambda t: _evolve_cfg(t, objective__limit=-5), "limit must be >= 1"),
    ("evolve-val-fraction", lambda t: _evolve_cfg(t, objective__val_fraction=0), "val_fraction must be in"),
    ("evolve-fractions-sum", lambda t: _evolve_cfg(t, objective__val_fraction=0.5,
                                                   objective__test_fraction=0.5), "must be < 0.9"),
    ("evolve-num-classes", lambda t: _evolve_cfg(t, objective__scoring__batch__num_classes=1),
     "num_classes must be >= 2"),
    ("evolve-drop-path", lambda t: _evolve_cfg(t, objective__scoring__stats__drop_path=1.0),
     "drop_path must be in [0, 1)"),
    ("evolve-grad-groups", lambda t: _evolve_cfg(t, objective__scoring__stats__grad_groups=1),
     "grad_groups must be >= 2"),
    ("evolve-seed-proxy-unknown", lambda t: _evolve_cfg(t, seed_proxies=["params", "nope"]), "synflow"),
    ("evolve-device-cuda-without-cuda", lambda t: _evolve_cfg(t, objective__scoring__device="cuda"), "CUDA"),
    ("evolve-empty-config", lambda t: ["evolve", "--config", _file(t, "e.yaml", b"")], "is empty"),
    ("evolve-garbage-config", lambda t: ["evolve", "--config", _file(t, "e.yaml", GARBAGE)], "e.yaml"),
    ("evolve-workers-zero", lambda t: _evolve_cfg(t) + ["--workers", "0"], "--workers must be"),
    ("search-workers-zero", lambda t: SEARCH + ["--backend", "ray", "--workers", "0"], "--workers must be"),
    ("search-budget-zero", lambda t: SEARCH[:-1] + ["0"], "budget must be >= 1"),
    ("search-bad-window", lambda t: SEARCH + ["--params", "9-4"], "larger than max"),
    ("search-mutation-prob", lambda t: SEARCH + ["--config", _file(t, "s.yaml", b"proxy: params\nmutation_prob: 2\n")],
     "mutation_prob must be in [0, 1]"),
]


@pytest.mark.parametrize("make_argv,msg", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_badinput(make_argv, msg, tmp_path, capsys, request):
    if "without-cuda" in request.node.callspec.id and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out, argv = tmp_path / "out", make_argv(tmp_path)
    assert main(argv + (["--out", str(out)] if argv[0] != "stats" else [])) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("where", ["existing-file", "read-only-place"])
def test_badinput_out(where, tmp_path, capsys):
    out = tmp_path / "f.txt" if where == "existing-file" else Path("/proc/autoprox-nope/out")
    if where == "existing-file":
        out.write_text("keep")
    for argv in (BENCH, SEARCH, _evolve_cfg(tmp_path)):
        assert main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(out) in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert out.read_text() == "keep" if where == "existing-file" else not out.exists()


def test_outputs_never_replace_devices_fifos_or_links(tmp_path, capsys):
    """``--out`` onto a FIFO, a socket or a link (a device takes the same path; not tested on the real
    /dev/null, which a regression would replace): one line, exit 2, the thing left as it was."""
    import os
    import socket
    import stat
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "real.txt"
    target.write_text("keep")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    for out in (str(fifo), str(sock_path), str(link)):
        assert main(["export", "snip", "--format", "text", "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "regular files only" in err, err
    sock.close()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    assert link.is_symlink() and target.read_text() == "keep"
    assert main(["export", "snip", "--format", "text", "--out", str(tmp_path / "new.txt")]) == 0


@pytest.mark.parametrize("argv, says", [(["bench", "--limit", "abc"], "invalid int value: 'abc'"),
                                        (["nope"], "invalid choice: 'nope'"),
                                        (["search", "--proxy", "snip"], "required: --out")])
def test_usage_errors_are_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and says in err and "--help" in err, err


def test_inputs_beyond_pythons_limits_are_one_line(tmp_path, capsys):
    """Deep nesting (expression, JSON benchmark, YAML) and a YAML alias bomb: one line, exit 2, quickly."""
    deep = "abs(" * 3000 + "weight_norm" + ")" * 3000
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "space: *i\n"
    (tmp_path / "bomb.yaml").write_text(bomb)
    (tmp_path / "deep.yaml").write_text("space: " + "[" * 3000 + "]" * 3000 + "\n")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    cases = [(["export", deep, "--format", "text"], "nested 3000 deep"),
             (["bench", "--config", str(tmp_path / "bomb.yaml")], "more than 20 aliases"),
             (["bench", "--config", str(tmp_path / "deep.yaml")], "nested deeper than 64"),
             (["bench", "--space", "pit", "--bench", str(tmp_path / "deep.json"), "--out", str(tmp_path / "o")],
              "nested too deep")]
    for argv, says in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, says", [({"c100_kd_acc": 10 ** 400}, "is not a finite number: 1000"),
                                         ({"c100_kd_acc": True}, "is not a finite number: True"),
                                         ({"c100_kd_acc": 70.0, "c100_kd_ac": 3}, "unknown key 'c100_kd_ac'")])
def test_wrong_accuracies_and_misspelt_keys_are_refused(extra, says, tmp_path, capsys):
    arch = {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}
    recs = [{"arch": arch, "c100_kd_acc": 60.0, "c100_kd_ac": 1} if "c100_kd_ac" in extra else
            {"arch": arch, "c100_kd_acc": 60.0}, {"arch": arch, **extra}]
    (tmp_path / "b.json").write_text(json.dumps(recs))
    assert main(["bench", "--space", "pit", "--bench", str(tmp_path / "b.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "o").exists()


def test_a_batch_beyond_the_machines_memory_is_refused_with_its_figure(tmp_path, capsys):
    argv = ["bench", "--space", "pit", "--proxy", "snip", "--resolution", "200000", "--out", str(tmp_path / "o")]
    assert main(argv) == 2  # (a data-free proxy builds no batch: params runs at any resolution)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs 14,305 GiB" in err and "this machine has" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, says", [(["--params", "900-1000", "--budget", "5"], "widen --params"),
                                         (["--bench-only", "--seed", "-1"], "seed must be >= 0"),
                                         (["--search-seed", "-3", "--budget", "5"], "seed must be >= 0")])
def test_a_search_that_cannot_run_leaves_no_folder(extra, says, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["search", "--space", "pit", "--proxy", "params", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not out.exists()


def test_a_verb_refuses_another_verbs_folder_and_a_locked_one(tmp_path, capsys):
    """bench into a search run, search --resume on a bench folder: one line, nothing rewritten; a folder
    another process is writing (its lock held): one line."""
    import subprocess
    import sys
    import time
    s, b = tmp_path / "s", tmp_path / "b"
    assert main(["search", "--space", "pit", "--proxy", "params", "--budget", "4", "--out", str(s)]) == 0
    assert main(["bench", "--space", "pit", "--out", str(b)]) == 0
    capsys.readouterr()
    before = (s / "config.yaml").read_text()
    assert main(["bench", "--space", "pit", "--out", str(s)]) == 2
    assert "holds an autoprox search run" in capsys.readouterr().err
    assert main(["search", "--space", "pit", "--proxy", "params", "--budget", "4", "--out", str(b), "--resume"]) == 2
    assert "holds an autoprox bench run" in capsys.readouterr().err
    assert (s / "config.yaml").read_text() == before and not (b / "state.json").exists()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"), str(b / ".autoprox-lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["bench", "--space", "pit", "--out", str(b)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "being written by another autoprox run" in err, err
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert main(["bench", "--space", "pit", "--out", str(b)]) == 0  # the lock died with its process
