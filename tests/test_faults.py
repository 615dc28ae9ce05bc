"""Fault injection: kills at every phase of evolve and search resume to the same
bytes as an unbroken run; cache damage recomputes (or goes on without storing) with the same
figures; a full disk is one line and never half a result; Ray survives a replacement worker
dying and gives up on a dead address (bad input: ``test_faults_inputs.py``).

Kills are exceptions raised in-process from monkeypatched functions (``Kill`` derives from
``BaseException`` so no ``except Exception`` can swallow it), never sleeps. Each test's first
word after ``test_`` is its category in the results table (benchmarks/results/reliability.md)."""
from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import autoprox.core.io as io
import autoprox.discovery.loop as loop
import autoprox.discovery.run as evo_run
import autoprox.archsearch.run as search_run
from autoprox.cli.main import main
from autoprox.core.config import save_config
from autoprox.discovery.config import EvolveConfig
from autoprox.discovery.run import evolve
from autoprox.discovery.objective import Objective, ObjectiveConfig
from autoprox.discovery.variation import VariationConfig
from autoprox.parallel.backends import SerialBackend
from autoprox.archsearch.config import SearchConfig
from autoprox.archsearch.run import search
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig
from autoprox.stats.cache import StatsCache, decode
from autoprox.stats.provider import ScoringConfig, StatsProvider

from conftest import SMALL, score_named, use_small_zoo


class Kill(BaseException):
    """A kill -9 at an injected point."""


def kill_on_call(monkeypatch, owner, name: str, n: int, after: bool = False) -> None:
    """Make ``owner.name`` raise ``Kill`` on its ``n``-th call (``after``: once it has run)."""
    real, calls = getattr(owner, name), [0]

    def dying(*a, **kw):
        calls[0] += 1
        if calls[0] == n and not after:
            raise Kill
        out = real(*a, **kw)
        if calls[0] == n:
            raise Kill
        return out
    monkeypatch.setattr(owner, name, dying)


def failing_writer(monkeypatch, when, exc: BaseException) -> None:
    """Every atomic write (outputs, checkpoints, cache) for which ``when(path, n)`` holds raises
    ``exc`` (``n``: that file name's write count so far)."""
    real, seen = io.write_temp, {}

    def write(path, data):
        seen[path.name] = seen.get(path.name, 0) + 1
        if when(path, seen[path.name]):
            raise exc
        return real(path, data)
    monkeypatch.setattr(io, "write_temp", write)


def enospc(path="") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


BENCH = ["bench", "--space", "pit", "--proxy", "params"]


def tree(d: Path) -> list[str]:
    """The outputs under ``d`` (the run folder's record and lock, autoprox.core.runs, are not outputs)."""
    skip = {".autoprox-run", ".autoprox-lock"}
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name not in skip) if d.exists() else []


# ---------------------------------------------------------------------------------- evolve kills
@pytest.fixture(scope="module")
def scoring(tmp_path_factory, tiny_batch_cfg) -> ScoringConfig:
    return ScoringConfig(batch=tiny_batch_cfg, stats=StatsConfig(act_samples=2, act_tokens=4),
                         cache_dir=str(tmp_path_factory.mktemp("fault-cache")))


@pytest.fixture(scope="module")
def evo_cfg(scoring) -> EvolveConfig:
    """Cheap ops only (no SVDs), 8 archs: a whole run takes a few seconds."""
    obj = ObjectiveConfig(spaces=("pit",), limit=8, val_fraction=0.25, test_fraction=0.25, scoring=scoring)
    var = VariationConfig(leaves=("weight", "weight_grad"), single_leaves=("num_params",), max_nodes=8,
                          unary=("abs", "log", "sqrt", "sigmoid", "square", "to_mean_scalar", "sum", "mean"),
                          binary=("element_wise_sum", "element_wise_product", "element_wise_difference"))
    return EvolveConfig(population=4, steps=2, offspring=4, hall_of_fame=3, seed_proxies=("snip",),
                        objective=obj, variation=var)


def evo_outputs(d: Path) -> dict:
    """Every result file byte for byte; the checkpoint without its wall-clock figures."""
    ck = json.loads((d / "checkpoint.json").read_text())
    for k in ("elapsed", "progress"):
        ck.pop(k)
    files = {n: (d / n).read_bytes() for n in ("config.yaml", "history.jsonl", "hall_of_fame.yaml",
                                              "best.yaml", "summary.md")}
    return {"checkpoint": ck, **files}


@pytest.fixture(scope="module")
def evo_whole(evo_cfg, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("whole") / "run"
    with pytest.MonkeyPatch.context() as mp:
        use_small_zoo(mp)
        evolve(evo_cfg, d)
    return evo_outputs(d)


def _stale_tmp_then_kill(monkeypatch, name: str, n: int) -> None:
    """The ``n``-th write of ``name`` is killed between its temp file and the rename."""
    real, seen = io.write_temp, [0]

    def write(path, data):
        tmp = real(path, data)
        if path.name == name:
            seen[0] += 1
            if seen[0] == n:
                raise Kill  # the temporary stays behind, as after kill -9
        return tmp
    monkeypatch.setattr(io, "write_temp", write)


EVOLVE_KILLS = {  # where the run dies -> how
    "statistics-loading": lambda mp: kill_on_call(mp, StatsProvider, "get", 5),
    "initial-population": lambda mp: kill_on_call(mp, Objective, "evaluate", 1),
    "mid-generation": lambda mp: kill_on_call(mp, Objective, "evaluate", 2),
    "after-history-append": lambda mp: kill_on_call(mp, loop.Run, "evaluate", 2, after=True),
    "between-checkpoints": lambda mp: kill_on_call(mp, loop, "save_state", 2),
    "inside-checkpoint-write": lambda mp: _stale_tmp_then_kill(mp, "checkpoint.json", 2),
    "last-checkpoint-before-report": lambda mp: kill_on_call(mp, evo_run, "write_outputs", 1),
    "inside-report": lambda mp: _stale_tmp_then_kill(mp, "best.yaml", 1),
}


@pytest.mark.parametrize("point", list(EVOLVE_KILLS))
def test_kill_evolve(point, evo_cfg, evo_whole, tmp_path, small_zoo):
    d = tmp_path / "run"
    with pytest.MonkeyPatch.context() as kill:
        EVOLVE_KILLS[point](kill)
        with pytest.raises(Kill):
            evolve(evo_cfg, d)
    if point == "statistics-loading":
        assert not d.exists()  # statistics load before the run folder is made
    evolve(evo_cfg, d, resume=True)
    assert evo_outputs(d) == evo_whole
    assert not list(d.glob(".*.tmp"))


def test_kill_evolve_twice(evo_cfg, evo_whole, tmp_path, small_zoo):
    d = tmp_path / "run"
    for point in ("mid-generation", "between-checkpoints"):
        with pytest.MonkeyPatch.context() as kill:
            EVOLVE_KILLS[point](kill)
            with pytest.raises(Kill):
                evolve(evo_cfg, d, resume=d.exists())
    evolve(evo_cfg, d, resume=True)
    assert evo_outputs(d) == evo_whole


# ---------------------------------------------------------------------------------- search kills
@pytest.fixture(scope="module")
def search_cfg(scoring) -> SearchConfig:
    return SearchConfig(proxy="snip", space="pit", params=(0.0, 1.0), budget=12, chunk=4, population=4,
                        parents=3, strategy="evolution", top_k=3, scoring=scoring)


SEARCH_FILES = ("config.yaml", "state.json", "history.csv", "result.yaml")


@pytest.fixture(scope="module")
def search_whole(search_cfg, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("swhole") / "run"
    search(search_cfg, d)
    return {n: (d / n).read_bytes() for n in SEARCH_FILES}


SEARCH_KILLS = {
    "backend-start": lambda mp: kill_on_call(mp, search_run._Scorer, "start", 1),
    "statistics-loading": lambda mp: kill_on_call(mp, StatsProvider, "get", 2),
    "mid-chunk": lambda mp: kill_on_call(mp, search_run._Scorer, "__call__", 3),
    "between-checkpoint-files": lambda mp: kill_on_call(mp, search_run, "save_state", 2),
    "inside-state-write": lambda mp: _stale_tmp_then_kill(mp, "state.json", 2),
    "before-result": lambda mp: kill_on_call(mp, search_run, "write_result", 1),
}


@pytest.mark.parametrize("point", list(SEARCH_KILLS))
def test_kill_search(point, search_cfg, search_whole, tmp_path, monkeypatch):
    d = tmp_path / "run"
    SEARCH_KILLS[point](monkeypatch)
    with pytest.raises(Kill):
        search(search_cfg, d)
    monkeypatch.undo()
    if point == "backend-start":
        assert not d.exists()
    search(search_cfg, d, resume=True)
    assert {n: (d / n).read_bytes() for n in SEARCH_FILES} == search_whole
    assert not list(d.glob(".*.tmp"))


# ---------------------------------------------------------------------------------- cache faults
EXPRS = ["agg_sum(abs(weight))", "agg_mean(to_mean_scalar(sigmoid(linear_input_grad)))"]


def tiny_archs(n: int = 3) -> list[dict]:
    space = get_space("pit")
    return [space.mutate(SMALL["pit"], random.Random(i), 0.9) for i in range(n)]


def cache_scores(scoring: ScoringConfig) -> np.ndarray:
    b = SerialBackend("pit", scoring)
    b.load(tiny_archs(), ["weight", "snip_saliency", "linear_input_grad"])
    try:
        return np.vstack([b.score(EXPRS), score_named(b, ["snip"])])
    finally:
        b.close()


@pytest.fixture(scope="module")
def warm_cache(scoring, tmp_path_factory):
    """A warm cache of the tiny archs and its scores (the reference)."""
    cfg = dataclasses.replace(scoring, cache_dir=str(tmp_path_factory.mktemp("warm")))
    return cfg, cache_scores(cfg)


def _flip(p: Path, where: float) -> None:
    b = bytearray(p.read_bytes())
    b[int(where * (len(b) - 1))] ^= 0x5A
    p.write_bytes(bytes(b))


def _swap(files: list[Path]) -> None:
    a, b = files[0].read_bytes(), files[1].read_bytes()
    files[0].write_bytes(b)
    files[1].write_bytes(a)


def _to_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "x").write_text("x")


DAMAGE = {
    "truncated-half": lambda fs: [f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]) for f in fs],
    "truncated-empty": lambda fs: [f.write_bytes(b"") for f in fs],
    "bit-flip-magic": lambda fs: [_flip(f, 0.0) for f in fs],
    "bit-flip-header": lambda fs: [_flip(f, 0.01) for f in fs],
    "bit-flip-payload": lambda fs: [_flip(f, 0.7) for f in fs],
    "bit-flip-crc": lambda fs: [_flip(f, 1.0) for f in fs],
    "swapped-entries": _swap,
    "directory-in-place": lambda fs: [_to_dir(f) for f in fs],
    "foreign-bytes": lambda fs: [f.write_bytes(b"\xfc\x00garbage" * 50) for f in fs],
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_cache_damage(kind, warm_cache, tmp_path):
    cfg, want = warm_cache
    root = tmp_path / "cache"
    shutil.copytree(cfg.cache_dir, root)
    files = sorted(root.rglob("*.apx"))
    assert len(files) == 3
    DAMAGE[kind](files)
    (files[0].parent / f".{files[0].name}.123.tmp").write_bytes(b"half")  # a killed write's leftover
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = cache_scores(dataclasses.replace(cfg, cache_dir=str(root)))
    np.testing.assert_array_equal(got, want)  # recomputed values equal the stored ones bit for bit
    if kind == "directory-in-place":  # cannot be replaced: warned once, not stored
        assert len([w for w in caught if "cannot be written" in str(w.message)]) == 1
    else:  # damaged entries were rewritten whole, under their own key
        for f in files:
            assert decode(bytearray(f.read_bytes()), f.stem) is not None
    assert main(["cache", "clean", "--cache-dir", str(root)]) == 0  # the killed write's temporary
    assert not list(root.rglob(".*.tmp")) and len(list(root.rglob("*.apx"))) == 3


@pytest.mark.parametrize("exc", [PermissionError(errno.EACCES, "Permission denied"), enospc()],
                         ids=["read-only", "full-disk"])
def test_cache_unwritable(exc, warm_cache, tmp_path, monkeypatch):
    """Tests run as root (chmod does not stop root), so the writer itself refuses."""
    cfg, want = warm_cache
    failing_writer(monkeypatch, lambda p, n: p.suffix == ".apx", exc)
    cold = dataclasses.replace(cfg, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="cannot be written") as rec:
        got = cache_scores(cold)
    assert len([w for w in rec if "cannot be written" in str(w.message)]) == 1  # once, not per arch
    np.testing.assert_array_equal(got, want)
    assert not list((tmp_path / "cache").rglob("*.apx"))


def test_cache_no_cache_scores_like_cache(warm_cache):
    cfg, want = warm_cache
    np.testing.assert_array_equal(cache_scores(dataclasses.replace(cfg, use_cache=False)), want)


def test_cache_unwritable_cache_dir_evolve_warns_and_finishes(evo_cfg, evo_whole, tmp_path, small_zoo):
    """Decision: a cache folder that cannot be made (``cache_dir: /proc/nope``) is the
    read-only case: one warning, the run goes on computing, the same results."""
    sc = dataclasses.replace(evo_cfg.objective.scoring, cache_dir="/proc/nope")
    cfg = dataclasses.replace(evo_cfg, objective=dataclasses.replace(evo_cfg.objective, scoring=sc))
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        evolve(cfg, tmp_path / "run")
    got, want = evo_outputs(tmp_path / "run"), copy.deepcopy(evo_whole)
    assert got.pop("config.yaml") != want.pop("config.yaml")  # it records the cache_dir given
    got["checkpoint"].pop("config"), want["checkpoint"].pop("config")
    assert got == want


# ---------------------------------------------------------------------------------- full disk
@pytest.mark.parametrize("name", ["config.yaml", "jcm.png"])
def test_fulldisk_bench_writes_all_or_none(name, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    failing_writer(monkeypatch, lambda p, n: p.name == name, enospc())
    assert main(BENCH + ["--limit", "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err  # a progress line (statistics) may precede the one error line
    errors = [ln for ln in err.splitlines() if ln.startswith("autoprox bench: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err
    assert tree(out) == []  # none of bench.csv, scores.csv, config.yaml, the plots
    monkeypatch.undo()
    assert main(BENCH + ["--limit", "6", "--out", str(out)]) == 0
    assert tree(out) == ["bench.csv", "config.yaml", "jcm.png", "scatter.png", "scores.csv"]


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_fulldisk_evolve(nth, evo_cfg, evo_whole, tmp_path, capsys, small_zoo):
    """The disk fills at the ``nth`` checkpoint: one line, exit 2; the run resumes once freed."""
    save_config(evo_cfg, tmp_path / "e.yaml")
    argv = ["evolve", "--config", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "run")]
    with pytest.MonkeyPatch.context() as full:
        failing_writer(full, lambda p, n: p.name == "checkpoint.json" and n == nth, enospc("checkpoint.json"))
        assert main(argv) == 2
    err = capsys.readouterr().err  # progress lines (statistics phase) may precede the one error line
    errors = [ln for ln in err.splitlines() if ln.startswith("autoprox evolve: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err, err
    assert main(argv + ["--resume"]) == 0
    assert evo_outputs(tmp_path / "run") == evo_whole


def test_fulldisk_evolve_outputs_all_or_none(evo_cfg, evo_whole, tmp_path, capsys, small_zoo):
    """The disk fills while the report is written (at its last file): no report file is left half
    new, and ``--resume`` writes them all."""
    save_config(evo_cfg, tmp_path / "e.yaml")
    argv = ["evolve", "--config", str(tmp_path / "e.yaml"), "--out", str(tmp_path / "run")]
    with pytest.MonkeyPatch.context() as full:
        failing_writer(full, lambda p, n: p.name == "summary.md", enospc("summary.md"))
        assert main(argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    report = ("hall_of_fame.yaml", "progress.csv", "best.yaml", "jcm.png", "best_vs_accuracy.png", "summary.md")
    assert not any((tmp_path / "run" / n).exists() for n in report)
    assert not list((tmp_path / "run").glob(".*.tmp"))
    assert main(argv + ["--resume"]) == 0
    assert evo_outputs(tmp_path / "run") == evo_whole and all((tmp_path / "run" / n).exists() for n in report)


@pytest.mark.parametrize("name", ["state.json", "history.csv", "result.yaml", "scores.png"])
def test_fulldisk_search(name, search_cfg, search_whole, tmp_path, monkeypatch):
    d = tmp_path / "run"
    once = name in ("result.yaml", "scores.png")  # written once, at the end (together: all or none)
    failing_writer(monkeypatch, lambda p, n: p.name == name and n == 2 - once, enospc(name))
    with pytest.raises(OSError, match="No space"):
        search(search_cfg, d)
    if once:
        assert not (d / "result.yaml").exists() and not (d / "scores.png").exists()
    monkeypatch.undo()
    search(search_cfg, d, resume=True)
    assert {n: (d / n).read_bytes() for n in SEARCH_FILES} == search_whole


def test_clean_leaves_a_live_writers_temporaries(tmp_path):
    """``cache clean`` while another process writes: its temporaries stay; a dead writer's and older
    unnamed ones go."""
    import subprocess
    import sys
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = tmp_path / "pit" / "ab"
    d.mkdir(parents=True)
    names = {f".x.apx.{live.pid}-k1.tmp": True, f".y.apx.{dead.pid}-k2.tmp": False, ".z.apx.q3.tmp": False}
    for n in names:
        (d / n).write_bytes(b"half")
    try:
        assert main(["cache", "clean", "--cache-dir", str(tmp_path)]) == 0
        assert {p.name for p in d.iterdir()} == {n for n, keep in names.items() if keep}
    finally:
        live.kill()
        live.wait()
    assert main(["cache", "clean", "--cache-dir", str(tmp_path)]) == 0
    assert not list(d.iterdir())


def test_a_fifo_in_an_entrys_place_is_a_miss_not_a_hang(warm_cache, tmp_path):
    cfg, want = warm_cache
    root = tmp_path / "c"
    shutil.copytree(cfg.cache_dir, root)
    entry = sorted(root.rglob("*.apx"))[0]
    entry.unlink()
    os.mkfifo(entry)
    got: list = []

    def score() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the FIFO cannot be replaced: warned, recomputed
            got.append(cache_scores(dataclasses.replace(cfg, cache_dir=str(root))))
    t = threading.Thread(target=score, daemon=True)  # a regression hangs in open(): fail, do not hang
    t.start()
    t.join(timeout=300)
    assert not t.is_alive(), "reading a FIFO in an entry's place hangs"
    np.testing.assert_array_equal(got[0], want)
    assert stat.S_ISFIFO(os.lstat(entry).st_mode)


def test_an_entry_truncated_under_a_reader_is_one_error_not_sigbus(warm_cache, tmp_path):
    """Run in a child: were the check missing, SIGBUS would kill the process."""
    cfg, _ = warm_cache
    root = tmp_path / "c"
    shutil.copytree(cfg.cache_dir, root)
    entry = sorted(root.rglob("*.apx"))[0]
    code = (
        "import os, sys\n"
        "from autoprox.stats.cache import StatsCache\n"
        "p = sys.argv[1]\n"
        "c = StatsCache(os.path.dirname(os.path.dirname(os.path.dirname(p))))\n"
        "space, key = p.split(os.sep)[-3], os.path.basename(p)[:-4]\n"
        "s = c.load(space, key)\n"
        "fam = max(s.tensors, key=lambda f: s.tensors[f].nbytes())\n"
        "os.truncate(p, 100)\n"
        "try:\n    s.tensors[fam][0]\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(entry)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "changed in place" in r.stdout, (r.returncode, r.stdout, r.stderr[-500:])


def test_an_entry_rewritten_in_place_under_a_reader_gives_no_values(warm_cache, tmp_path):
    """Another arch's valid entry written over a loaded one (same inode): refused, not read."""
    cfg, _ = warm_cache
    root = tmp_path / "c"
    shutil.copytree(cfg.cache_dir, root)
    first, other = sorted(root.rglob("*.apx"))[:2]
    space, key = first.parts[-3], first.stem
    s = StatsCache(root).load(space, key)
    fam = next(iter(s.tensors))
    time.sleep(0.01)
    with open(first, "r+b") as f:  # in place, not by rename: a reader of the inode would see the new bytes
        f.write(other.read_bytes()[:first.stat().st_size])
    with pytest.raises(RuntimeError, match="changed in place or replaced while being read"):
        s.tensors[fam][0]
