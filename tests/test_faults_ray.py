"""Ray faults (the fault-injection suite of ``test_faults``, continued): a replacement worker that
dies while it reloads, and a cluster address nobody answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autoprox.cli.main import main
from autoprox.parallel.backends import RayBackend, SerialBackend

from test_faults import BENCH, EXPRS, scoring, tiny_archs  # noqa: F401  (scoring: a fixture)


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
def test_ray_unreachable_address(address, tmp_path, capsys):
    import socket
    if address == "auto":
        from ray._private import services
        if services.find_gcs_addresses():  # 'auto' finds any cluster running on this machine
            pytest.skip("a Ray cluster runs on this machine")
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
