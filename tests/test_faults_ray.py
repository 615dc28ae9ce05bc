"""Ray faults (the fault-injection suite of ``test_faults``, continued): a replacement worker that
dies while it reloads, and a cluster address nobody answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autoprox.cli.main import main
from autoprox.parallel.backends import RayBackend, SerialBackend

from test_faults import BENCH, EXPRS, scoring, tiny_archs  # noqa: F401  (scoring: a fixture)

pytestmark = pytest.mark.ray


def test_ray_replacement_dies_while_reloading(scoring, tmp_path, monkeypatch):
    import ray

    cfg = dataclasses.replace(scoring, cache_dir=str(tmp_path / "cache"))
    archs = tiny_archs(4)
    serial = SerialBackend("pit", cfg)
    serial.load(archs)
    want = serial.score(EXPRS)
    b = RayBackend("pit", cfg, workers=2, threads_per_worker=1)
    try:
        b.load(archs)
        real, spawned = b._spawn, []

        def spawn_dying_once():
            a = real()
            spawned.append(a)
            if len(spawned) == 1:
                ray.kill(a)  # the first replacement dies before its reload finishes
            return a
        monkeypatch.setattr(b, "_spawn", spawn_dying_once)
        ray.kill(b.actors[0])
        np.testing.assert_allclose(b.score(EXPRS), want, rtol=1e-6, atol=0, equal_nan=True)
        assert len(spawned) == 2 and b.actors[0] is spawned[1]
    finally:
        b.close()
        serial.close()
    assert not ray.is_initialized()


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "auto"], ids=["host-port", "auto"])
def test_ray_unreachable_address(address, tmp_path, capsys, monkeypatch):
    import socket
    if address == "auto":  # 'auto' joins any cluster running on this machine: here it finds none
        from ray._private import services
        monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
        monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    argv = BENCH + ["--limit", "4", "--backend", "ray", "--address", address.format(port=port),
                    "--connect-timeout", "1", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert any(m in err for m in ("no Ray cluster answers", "cannot join", "--address auto:")), err
    assert err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("how,verb", [("ctrl-c", "bench"), ("kill", "bench"), ("kill", "stats")])
def test_ctrl_c_or_kill_during_a_ray_load_ends_with_one_line_and_leaves_no_process(how, verb, tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to the driver's process group), or ``kill PID`` (SIGTERM
    to the driver alone, as a scheduler's time limit sends it), while Ray workers compute statistics:
    exit 130 / 143, one line with the resume command, no traceback and no native stack dump of Ray's,
    no driver-side process left (Ray's workers live in their own session and go with the driver)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    what = ["--proxy", "snip", "--out", str(tmp_path / "b")] if verb == "bench" else []  # stats: Ray's blocking get
    cmd = [sys.executable, "-m", "autoprox.cli.main", verb, "--space", "pit", *what,
           "--backend", "ray", "--workers", "2", "--cache-dir", str(tmp_path / "cache"),
           "--batch-size", "4", "--resolution", "32", "--num-classes", "10"]
    reset = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background shell may have ignored it
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=reset,
                            env=os.environ | {"RAY_AUTH_MODE": "disabled"})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and not any((tmp_path / "cache" / "pit").glob("*/*.apx")):
        time.sleep(0.5)  # the workers are computing (the first entries are stored)
    assert proc.poll() is None, "the bench ended before it could be interrupted"
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    said = "interrupted" if how == "ctrl-c" else "terminated (SIGTERM)"
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err[-2000:]
    assert "Traceback" not in err and "logging.cc" not in err, err[-2000:]
    assert lines[-1].startswith(f"autoprox {verb}: {said}; what was finished is kept. Continue with: autoprox {verb}")
    assert not (tmp_path / "b").exists()  # nothing half-written
    time.sleep(2)
    try:
        os.killpg(proc.pid, 0)
        left = True
    except ProcessLookupError:
        left = False
    assert not left, "processes of the interrupted run are still alive"
