"""The parallelism seam: backends that map ``ScoringWorker``s over archs.

``SerialBackend`` runs one worker in-process (the test and debug path); ``RayBackend`` shards
archs round-robin over Ray actors and replaces an actor that dies (also while it reloads).
Both take expression strings and return (expressions x archs) matrices; ``score_proxies``
turns resolved proxies (``autoprox.proxy.spec``) into their parts' expressions, scores them
in one call and combines them on the driver (fused proxies across all loaded archs).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from autoprox.core import memory
from autoprox.parallel import session
from autoprox.parallel.worker import ScoringWorker
from autoprox.stats.provider import ScoringConfig


class Backend(Protocol):
    """Scores expressions on a fixed list of archs; matrices are (expressions x archs).
    ``start_load`` and ``submit`` start the work and return a call that waits for it (so
    several backends can run at once); ``load`` and ``score`` wait at once. ``archs``: the archs
    loaded last, in order."""

    archs: list[dict]

    def start_load(self, archs: Sequence[dict], families: Sequence[str] | None = None,
                   progress: Callable[[int], None] | None = None) -> Callable[[], Any]: ...

    def load(self, archs: Sequence[dict], families: Sequence[str] | None = None,
             progress: Callable[[int], None] | None = None) -> None: ...

    def warm(self, archs: Sequence[dict], families: Sequence[str]) -> None: ...

    def submit(self, exprs: Sequence[str]) -> Callable[[], np.ndarray]: ...

    def score(self, exprs: Sequence[str]) -> np.ndarray: ...

    def probe(self, exprs: Sequence[str], first: int) -> np.ndarray: ...

    def close(self) -> None: ...


def part_expressions(proxies: Sequence[Any]) -> list[str]:
    """Every distinct part expression of ``proxies``, in order: what workers score."""
    return list(dict.fromkeys(str(part.expr) for p in proxies for part in p.parts))


def combine(proxies: Sequence[Any], exprs: Sequence[str], m: np.ndarray,
            archs: Sequence[dict] | None = None) -> np.ndarray:
    """(proxies x archs) from the (exprs x archs) scores of ``part_expressions(proxies)``; a proxy
    that reads the archs' choices (an arch surrogate) also gets ``archs``."""
    row = {e: i for i, e in enumerate(exprs)}
    n = m.shape[1] if m.ndim == 2 and m.shape[0] else (len(archs) if archs is not None else 0)

    def one(p: Any) -> np.ndarray:
        sub = m[[row[str(q.expr)] for q in p.parts]].reshape(len(p.parts), n)
        return np.asarray(p.combine(sub, archs), dtype=np.float64)
    return np.array([one(p) for p in proxies]).reshape(len(proxies), n)


def score_proxies(backend: Backend, proxies: Sequence[Any]) -> np.ndarray:
    """(proxies x archs) scores of resolved proxies on the loaded archs: every part's
    expression scored in one call (shared parts once), then combined per proxy."""
    if not proxies:
        return np.zeros((0, 0))
    exprs = part_expressions(proxies)
    archs = backend.archs
    m = backend.score(exprs) if exprs else np.zeros((0, len(archs)))
    return combine(proxies, exprs, m, archs)


def _matrix(rows: list[list[float]], n_exprs: int) -> np.ndarray:
    """(archs x expressions) nested lists -> (expressions x archs) float array."""
    return np.array(rows, dtype=np.float64).reshape(len(rows), n_exprs).T


class _Waiting:
    """``load`` and ``score`` of a backend as its ``start_load`` / ``submit``, waited for."""

    def load(self, archs: Sequence[dict], families: Sequence[str] | None = None,
             progress: Callable[[int], None] | None = None) -> None:
        """Load and wait; ``progress(n)`` is told of every ``n`` archs done."""
        self.start_load(archs, families, progress)()  # type: ignore[attr-defined]

    def score(self, exprs: Sequence[str]) -> np.ndarray:
        return self.submit(exprs)()  # type: ignore[attr-defined]


class SerialBackend(_Waiting):
    """One in-process ``ScoringWorker``."""

    def __init__(self, space: str, cfg: ScoringConfig, threads: int = 0) -> None:
        self.archs: list[dict] = []
        self.worker = ScoringWorker(space, cfg, threads)

    def start_load(self, archs: Sequence[dict], families: Sequence[str] | None = None,
                   progress: Callable[[int], None] | None = None) -> Callable[[], Any]:
        self.archs = list(archs)
        self.worker.load(list(archs), None if families is None else list(families),
                         None if progress is None else (lambda: progress(1)))  # in-process: done
        return lambda: None

    def warm(self, archs: Sequence[dict], families: Sequence[str]) -> None:
        self.worker.warm(list(archs), list(families))

    def submit(self, exprs: Sequence[str]) -> Callable[[], np.ndarray]:
        m = _matrix(self.worker.score(list(exprs)), len(exprs))  # in-process: done at once
        return lambda: m

    def probe(self, exprs: Sequence[str], first: int) -> np.ndarray:
        """(exprs x a few archs): scores on the first ``first`` loaded archs only."""
        return _matrix(self.worker.score(list(exprs), first), len(exprs))

    def close(self) -> None:
        self.worker.drop()


class RayBackend(_Waiting):
    """Ray actors wrapping ``ScoringWorker``, archs sharded round-robin; dead actors replaced."""

    def __init__(self, space: str, cfg: ScoringConfig, workers: int = 2, address: str | None = None,
                 threads_per_worker: int = 1, max_retries: int = 2, gpus_per_worker: float | None = None,
                 connect_timeout: float = session.CONNECT_TIMEOUT) -> None:
        session.check_workers(workers)
        gpus = gpus_per_worker if gpus_per_worker is not None else cfg.gpus_per_worker
        gpus = (1.0 if cfg.device.startswith("cuda") else 0.0) if gpus is None else gpus
        if gpus < 0:
            raise ValueError(f"--gpus-per-worker must be >= 0, got {gpus}")
        self.owns_ray = session.start(address, workers, connect_timeout)
        import ray

        try:
            session.check_resources(workers, 1.0, gpus)
        except session.ClusterError:
            session.stop(self.owns_ray)
            raise
        self._cls = ray.remote(num_cpus=1, num_gpus=gpus, runtime_env={"env_vars": memory.ENV})(ScoringWorker)
        self._args = (space, cfg, threads_per_worker)
        self.max_retries = max_retries
        self.archs: list[dict] = []
        self.actors = [self._spawn() for _ in range(workers)]
        self.shards: list[list[dict]] = [[] for _ in range(workers)]
        self.families: list[str] | None = None

    def _spawn(self) -> Any:
        return self._cls.remote(*self._args)

    def _respawn(self, i: int) -> Any:
        """Replace actor ``i`` by a fresh one; the ref of it re-loading the same shard."""
        import ray

        ray.kill(self.actors[i])
        self.actors[i] = self._spawn()
        return self.actors[i].load.remote(self.shards[i], self.families)

    def _submit(self, method: str, args_for: Callable[[int], tuple],
                done: Callable[[int], None] | None = None) -> Callable[[], list[Any]]:
        """Start ``method(*args_for(i))`` on every actor ``i``; the returned call waits for the
        results, replacing a dead actor (re-loading its shard) and retrying up to ``max_retries``;
        ``done(i)`` follows each actor's result."""
        refs = [getattr(a, method).remote(*args_for(i)) for i, a in enumerate(self.actors)]

        def wait() -> list[Any]:
            out = []
            try:
                for i, ref in enumerate(refs):
                    out.append(self._gather(i, ref, method, args_for))
                    if done is not None:
                        done(i)
            except Exception:
                _discard(refs[len(out) + 1:])
                raise
            return out
        return wait

    def _gather(self, i: int, ref: Any, method: str, args_for: Callable[[int], tuple]) -> Any:
        import ray
        from ray.exceptions import RayActorError

        for attempt in range(self.max_retries + 1):
            try:
                return ray.get(ref)
            except RayActorError:
                if attempt == self.max_retries:
                    raise
                reload = self._respawn(i)
                if method == "load":
                    ref = reload
                    continue
                try:  # the replacement can die too while it reloads: that counts as an attempt
                    ray.get(reload)
                except RayActorError:
                    ref = reload
                    continue
                ref = getattr(self.actors[i], method).remote(*args_for(i))
        raise AssertionError("unreachable")

    def start_load(self, archs: Sequence[dict], families: Sequence[str] | None = None,
                   progress: Callable[[int], None] | None = None) -> Callable[[], Any]:
        n = len(self.actors)
        self.archs = list(archs)
        self.shards = [list(archs[i::n]) for i in range(n)]
        self.families = None if families is None else list(families)
        if progress is None:
            return self._submit("load", lambda i: (self.shards[i], self.families))
        return self._load_in_steps(progress)

    def _load_in_steps(self, progress: Callable[[int], None]) -> Callable[[], list[int]]:
        """Each actor's shard as one call per arch (``load`` the first, ``extend`` the rest, queued
        at once: an actor runs its calls in order), so ``progress`` hears of every arch as it ends.
        An actor that dies has its whole shard re-loaded by a replacement (``_gather``)."""
        import ray
        from ray.exceptions import RayActorError

        pending: dict[Any, tuple[int, int]] = {}
        for i, shard in enumerate(self.shards):  # load(first arch or none) resets what the actor held
            pending[self.actors[i].load.remote(shard[:1], self.families)] = (i, len(shard[:1]))
            for arch in shard[1:]:
                pending[self.actors[i].extend.remote([arch], self.families)] = (i, 1)

        def wait() -> list[int]:
            done = [0] * len(self.shards)
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                i, count = pending.pop(ref)
                try:
                    ray.get(ref)
                except RayActorError:
                    for r in [r for r, (k, _) in pending.items() if k == i]:
                        del pending[r]
                    self._gather(i, self._respawn(i), "load", lambda k: (self.shards[k], self.families))
                    progress(len(self.shards[i]) - done[i])
                    done[i] = len(self.shards[i])
                    continue
                except Exception:
                    _discard(list(pending))
                    raise
                done[i] += count
                progress(count)
            return done
        return wait

    def warm(self, archs: Sequence[dict], families: Sequence[str]) -> None:
        """Compute and cache ``archs``' statistics on the actors (round-robin), holding nothing."""
        n = len(self.actors)
        self._submit("warm", lambda i: (list(archs[i::n]), list(families)))()

    def submit(self, exprs: Sequence[str]) -> Callable[[], np.ndarray]:
        args = (list(exprs),)
        wait = self._submit("score", lambda i: args)

        def assemble() -> np.ndarray:  # per-actor (archs x exprs) back to (exprs x archs) in load order
            out = np.full((len(args[0]), sum(len(s) for s in self.shards)), math.nan)
            for i, rows in enumerate(wait()):
                out[:, i::len(self.actors)] = _matrix(rows, len(args[0]))
            return out
        return assemble

    def probe(self, exprs: Sequence[str], first: int) -> np.ndarray:
        """(exprs x a few archs): scores on the first ``first`` archs of every actor's shard."""
        rows = self._submit("score", lambda i: (list(exprs), first))()
        return np.concatenate([_matrix(r, len(exprs)) for r in rows], axis=1)

    def close(self) -> None:
        """Kill the actors; shut Ray down only if this backend started it."""
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
        session.stop(self.owns_ray)


def _discard(refs: Sequence[Any]) -> None:
    """Cancel the calls of ``refs`` still queued and take every result: once one call failed, the
    others' errors are the same run's, reported by it once, never later by Ray as unhandled."""
    import ray

    for r in refs:
        try:
            ray.cancel(r)
        except Exception:  # noqa: BLE001 - finished or running calls cannot be cancelled: taken below
            pass
    for r in refs:
        try:
            ray.get(r)
        except Exception:  # noqa: BLE001 - the run already stops with its first error
            pass


def make_backend(kind: str, space: str, cfg: ScoringConfig, workers: int = 2, address: str | None = None,
                 gpus_per_worker: float | None = None,
                 connect_timeout: float = session.CONNECT_TIMEOUT) -> Backend:
    """A ``"serial"`` or ``"ray"`` backend for ``space``."""
    if kind == "serial":
        return SerialBackend(space, cfg)
    if kind == "ray":
        return RayBackend(space, cfg, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
                          connect_timeout=connect_timeout)
    raise ValueError(f"unknown backend {kind!r}; choices: serial, ray")
