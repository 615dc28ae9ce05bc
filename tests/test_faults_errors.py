"""Fault injection, continued: every autoprox error ends as one line and exit 2 on every path.

Each error class is raised from inside each backend's worker (serial in-process, Ray in an actor
process) at each place a worker can fail: loading statistics, the batched evaluator's packing of
a leaf, the reference evaluator's evaluation; and a cache entry changed for real under a running
``bench`` (cut short in place, or another arch's entry copied over it) on both evaluators. The
category in the results table is ``oneline``."""
from __future__ import annotations

import errno
import random
import shutil

import pytest

import autoprox.parallel.backends as backends
from autoprox.cli.main import main
from autoprox.core.config import ConfigError
from autoprox.core.io import NotRegularFileError
from autoprox.data.benchmark import BenchmarkError
from autoprox.parallel.session import ClusterError
from autoprox.parallel.worker import ScoringWorker
from autoprox.proxy.graph import GraphError
from autoprox.spaces import get_space
from autoprox.spaces.base import ArchError
from autoprox.stats.cache import EntryChanged

from conftest import PIT_SMALL

TINY = ["--batch-size", "4", "--resolution", "32", "--num-classes", "10"]
ERRORS = {  # the class -> an instance raised inside the worker, and the words its one line must hold
    "cache": (EntryChanged("cache entry x.apx was changed in place or replaced while being read"), "changed in place"),
    "benchmark": (BenchmarkError("b.json: record 3 key 'x_acc' is not a finite number"), "record 3 key"),
    "config": (ConfigError("scoring.stats.grad_groups must be >= 2, got 1"), "grad_groups must be"),
    "proxy": (GraphError("unknown statistic 'nope'"), "unknown statistic 'nope'"),
    "arch": (ArchError("arch has depth 99, beyond the space"), "depth 99"),
    "cluster": (ClusterError("2 workers need 2 CPU(s); the Ray cluster has 1"), "the Ray cluster has 1"),
    "special-file": (NotRegularFileError("x.png is a FIFO, not a regular file"), "is a FIFO"),
    "full-disk": (OSError(errno.ENOSPC, "No space left on device", "e.apx"), "No space left on device: e.apx"),
    "missing-statistic": (KeyError("statistic 'gelu_input' not available; have ['weight']"), "'gelu_input' not"),
}
WHERE = ("load", "batched", "reference")


def faulty_worker(where: str, exc: BaseException) -> type:
    """A ``ScoringWorker`` raising ``exc`` at ``where``; built from closures so that Ray ships it
    to its worker processes by value (this test module is not importable there)."""
    def load(self, archs, families=None, on_arch=None):
        if where == "load":
            raise exc
        return ScoringWorker.load(self, archs, families, on_arch)

    def extend(self, archs, families=None):
        if where == "load":
            raise exc
        return ScoringWorker.extend(self, archs, families)

    def score(self, exprs, first=None):
        import autoprox.proxy.graph as graph
        import autoprox.proxy.population as population

        def fail(*a, **kw):
            raise exc
        module, name = {"batched": (population, "pack"),  # the leaf packing, where a changed entry is read
                        "reference": (graph, "evaluate")}.get(where, (graph, "evaluate"))
        real = getattr(module, name)
        setattr(module, name, fail if where != "load" else real)
        try:
            return ScoringWorker.score(self, exprs, first)
        finally:  # in-process (serial), the module is the test run's own
            setattr(module, name, real)
    return type("FaultyWorker", (ScoringWorker,), {"load": load, "extend": extend, "score": score})


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> str:
    """A cache holding the statistics of the first 3 PiT archs (so each case only scores)."""
    cache = tmp_path_factory.mktemp("oneline-cache")
    assert main(["stats", "--space", "pit", "--limit", "3", "--cache-dir", str(cache), *TINY]) == 0
    return str(cache)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for every Ray case (the CLI joins it and leaves it running)."""
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _bench(warm: str, out, evaluator: str, backend: str) -> list[str]:
    return ["bench", "--space", "pit", "--proxy", "snip", "--limit", "3", "--cache-dir", warm, *TINY,
            "--evaluator", evaluator, "--backend", backend, "--workers", "1", "--out", str(out)]


def _one_error_line(capsys, verb: str, says: str) -> str:
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith(f"autoprox {verb}: error:")]
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in err, err[-3000:]
    return errors[0]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("kind", list(ERRORS))
def test_oneline_serial(kind, where, warm, tmp_path, capsys, monkeypatch):
    exc, says = ERRORS[kind]
    monkeypatch.setattr(backends, "ScoringWorker", faulty_worker(where, exc))
    out = tmp_path / "out"
    assert main(_bench(warm, out, "reference" if where == "reference" else "batched", "serial")) == 2
    _one_error_line(capsys, "bench", says)
    assert not out.exists()


@pytest.mark.ray
@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("kind", list(ERRORS))
def test_oneline_ray(kind, where, warm, ray_session, tmp_path, capsys, monkeypatch):
    exc, says = ERRORS[kind]
    monkeypatch.setattr(backends, "ScoringWorker", faulty_worker(where, exc))
    out = tmp_path / "out"
    assert main(_bench(warm, out, "reference" if where == "reference" else "batched", "ray")) == 2
    line = _one_error_line(capsys, "bench", says)
    assert "ray::" not in line and "pid=" not in line  # the error's own message, not Ray's wrapper
    assert not out.exists()


@pytest.mark.ray
def test_oneline_ray_worker_lost_for_good(warm, ray_session, tmp_path, capsys, monkeypatch):
    """Every replacement of a killed actor dies too: after its retries the run ends in one line."""
    import ray
    real = backends.RayBackend._spawn
    spawned = []

    def spawn(self):
        a = real(self)
        spawned.append(a)
        if len(spawned) > 1:
            ray.kill(a)
        return a
    real_score = backends.RayBackend.submit

    def submit(self, exprs):
        ray.kill(self.actors[0])
        return real_score(self, exprs)
    monkeypatch.setattr(backends.RayBackend, "_spawn", spawn)
    monkeypatch.setattr(backends.RayBackend, "submit", submit)
    out = tmp_path / "out"
    assert main(_bench(warm, out, "batched", "ray")) == 2
    line = _one_error_line(capsys, "bench", "Ray: ")
    assert "Actor" in line and len(spawned) == 3  # the first actor, then max_retries=2 replacements
    assert not out.exists()


def _truncate(entry, other) -> None:
    with open(entry, "r+b") as f:  # in place: the reader's descriptor sees it
        f.truncate(entry.stat().st_size // 2)


def _copy_over(entry, other) -> None:
    shutil.copyfile(other, entry)  # as `cp other entry` does: the same inode, another arch's bytes


@pytest.mark.parametrize("damage", [_truncate, _copy_over], ids=["truncated-in-place", "cp-over"])
@pytest.mark.parametrize("evaluator", ["batched", "reference"])
def test_oneline_cache_entry_changed_while_bench_scores(evaluator, damage, warm, tmp_path, capsys, monkeypatch):
    """The entries are loaded (checked), then changed before the evaluator reads them: one line,
    exit 2, nothing written, no score made up (the reference evaluator used to score NaN)."""
    cache = tmp_path / "cache"
    shutil.copytree(warm, cache)
    entries = sorted(cache.rglob("*.apx"))
    real = ScoringWorker.score

    def score(self, exprs, first=None):
        for e in entries:
            damage(e, entries[0] if e != entries[0] else entries[1])
        return real(self, exprs, first)
    monkeypatch.setattr(ScoringWorker, "score", score)
    out = tmp_path / "out"
    argv = _bench(str(cache), out, evaluator, "serial")
    assert main(argv) == 2
    _one_error_line(capsys, "bench", "was changed in place or replaced while being read")
    assert not out.exists()
    monkeypatch.undo()
    assert main(argv) == 0  # the damaged entries are recomputed
    assert (out / "bench.csv").is_file()


def test_oneline_a_bug_inside_a_worker_still_shows_its_traceback(warm, tmp_path, monkeypatch):
    """Only autoprox's errors and those of input and environment become one line: a TypeError (a
    bug) propagates, so it can be reported."""
    monkeypatch.setattr(backends, "ScoringWorker", faulty_worker("batched", TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):
        main(_bench(warm, tmp_path / "out", "batched", "serial"))
