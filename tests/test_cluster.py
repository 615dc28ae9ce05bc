"""A real local Ray cluster (``ray start --head``), joined with an address: the same scores as
the serial path; a cluster that cannot host the workers is refused, not waited for."""
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from autoprox.parallel.session import _wait_for_port

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(shutil.which("ray") is None, reason="the ray command line is not installed")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    port = _free_port()
    cmd = ["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
           "--disable-usage-stats", "--block"]
    head = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(f"127.0.0.1:{port}", 120)
        yield f"127.0.0.1:{port}"
    finally:  # only this cluster: 'ray stop' would end every Ray process on the machine
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:  # Ray's graceful stop can take half a minute: this cluster is done with
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=60)


def test_joined_cluster_scores_like_serial(cluster, tmp_path):
    """``autoprox bench --backend ray --address`` against the serial path: the same bench.csv, byte for byte."""
    for out, extra in (("serial", []), ("ray", ["--backend", "ray", "--workers", "2", "--address", cluster])):
        r = _bench(tmp_path, "--out", str(tmp_path / out), *extra)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ray" / "bench.csv").read_text() == (tmp_path / "serial" / "bench.csv").read_text()


def _bench(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """``autoprox bench`` in a fresh process (Ray reads its auth mode when first imported)."""
    cmd = [sys.executable, "-m", "autoprox.cli.main", "bench", "--space", "pit", "--limit", "4", "--proxy", "snip",
           "params", "--batch-size", "4", "--resolution", "32", "--num-classes", "10",
           "--cache-dir", str(tmp_path / "c"), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_AUTH_MODE", None)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_workers_the_cluster_cannot_host_are_refused(cluster, tmp_path):
    r = _bench(tmp_path, "--out", str(tmp_path / "o"), "--backend", "ray", "--workers", "3", "--address", cluster)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "3 workers need 3 CPU(s); the Ray cluster has 2" in r.stderr and not (tmp_path / "o").exists()
    r = _bench(tmp_path, "--out", str(tmp_path / "g"), "--backend", "ray", "--workers", "2", "--address", cluster,
               "--device", "cuda", "--gpus-per-worker", "0.5")
    assert r.returncode == 2 and "2 workers need 1 GPU(s); the Ray cluster has 0: lower --workers" in r.stderr


def test_gpus_per_worker_is_a_setting_checked_before_waiting(tiny_scoring):
    """A local session on a machine without GPUs: asking for GPUs is refused at once, not waited for."""
    import dataclasses
    from autoprox.parallel.backends import RayBackend
    from autoprox.parallel.session import ClusterError
    cfg = dataclasses.replace(tiny_scoring, device="cuda", gpus_per_worker=0.25)
    with pytest.raises(ClusterError, match=r"4 workers need 1 GPU\(s\)"):
        RayBackend("pit", cfg, workers=4)
    with pytest.raises(ValueError, match="gpus_per_worker must be >= 0"):
        dataclasses.replace(tiny_scoring, gpus_per_worker=-1.0)
