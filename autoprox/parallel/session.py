"""The Ray session: join a cluster (``address``) or start a local one, and stop only what we
started. An unreachable address fails within ``connect_timeout`` seconds with one line."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from autoprox.core.errors import AutoproxError

CONNECT_TIMEOUT = 60.0  # seconds to wait for a cluster at --address


class ClusterError(ValueError, AutoproxError):
    """No Ray cluster at the given address, or one that cannot host the workers."""


def check_workers(workers: int) -> None:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"--workers must be a whole number >= 1, got {workers!r}")


def _wait_for_port(address: str, timeout: float) -> None:
    """Raise ``ClusterError`` unless ``host:port`` accepts a connection within ``timeout`` s."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected HOST:PORT, 'auto' or ray://HOST:PORT")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, max(timeout, 0.1))):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ClusterError(f"no Ray cluster answers at {address} after {timeout:g} s ({e.strerror or e}); "
                                   f"start one with 'ray start --head' or drop --address") from None
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))


def start(address: str | None, num_cpus: int, connect_timeout: float = CONNECT_TIMEOUT) -> bool:
    """Join ``address`` or start a local Ray with ``num_cpus``; True when this call started Ray
    (then the caller shuts it down). Already initialised: nothing to do, False."""
    if address is not None:
        _token_auth()  # before Ray is first imported: it reads the mode once, at import
    import ray

    if ray.is_initialized():
        return False
    own = signal.getsignal(signal.SIGTERM)
    try:
        return _init(ray, address, num_cpus, connect_timeout)
    finally:
        _keep_sigterm(own)


def _keep_sigterm(own: Any) -> None:
    """Give back the program's own SIGTERM handler (the CLI's: one line and the resume command),
    which ``ray.init`` replaces with its own (a native stack dump, then exit 1)."""
    if callable(own) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, own)


def _init(ray: Any, address: str | None, num_cpus: int, connect_timeout: float) -> bool:
    if address is None:  # "local": a new instance even when `ray start` runs on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return True
    if address == "auto":
        address = _auto_address()
    if not address.startswith("ray://"):
        _wait_for_port(address, connect_timeout)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError) as e:
        raise ClusterError(f"cannot join the Ray cluster at {address!r}: {str(e).splitlines()[0]}") from None
    return True


def _auto_address() -> str:
    """The cluster ``--address auto`` means ($RAY_ADDRESS, else the one ``ray start`` recorded), so
    that it is waited for like any HOST:PORT: a recorded cluster that has since stopped would
    otherwise be retried for minutes."""
    from ray._private import services
    try:
        found = services.canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as e:
        raise ClusterError(f"--address auto: {str(e).splitlines()[0]}") from None
    if not found:
        raise ClusterError("--address auto: no running Ray cluster found on this machine; start one with "
                           "'ray start --head' or drop --address")
    return found


def _token_auth() -> None:
    """Ray >= 2.5x clusters from ``ray start`` require token authentication, which a driver uses
    only with ``RAY_AUTH_MODE=token``: turn it on when a token is available and the user chose nothing.
    Ray reads the mode when it is imported: a program that imported Ray already sets it itself."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") \
        or (Path.home() / ".ray" / "auth_token").is_file()
    if token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"


def stop(started: bool) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()


def check_resources(workers: int, cpus: float, gpus: float) -> None:
    """Refuse (instead of waiting forever) when the cluster cannot host ``workers`` actors."""
    import ray

    have: dict[str, Any] = ray.cluster_resources()
    for name, each in (("CPU", cpus), ("GPU", gpus)):
        need = workers * each
        if need > have.get(name, 0.0) + 1e-9:
            raise ClusterError(f"{workers} workers need {need:g} {name}(s); the Ray cluster has "
                               f"{have.get(name, 0.0):g}: lower --workers" +
                               (" or --gpus-per-worker" if name == "GPU" else ""))
