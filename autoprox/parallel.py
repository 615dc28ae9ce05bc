"""The parallelism seam: workers that hold archs' statistics and score serialised proxies.

A ``ScoringWorker`` owns a shard of architectures of one space and keeps their
statistics in memory; proxies reach it as canonical expression strings (or zoo
names / proxy files), never as pickled graph or DEAP objects. ``SerialBackend``
runs one worker in-process; ``RayBackend`` shards archs round-robin over Ray
actors and replaces an actor that dies. Both return (proxies x archs) matrices.
Fused proxies (``autoprox.fuse``) named in ``score_named`` have their parts scored
on the workers as expressions and are fused here, on the driver, over all loaded archs.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from .fuse import is_fused
from .graph import GraphProxy, parse, score_population
from .scoring import Proxy, ScoringConfig, StatsProvider, safe_score
from .stats import BASE_FAMILIES, ArchStats
from .zoo import resolve_proxy


def score_proxies(proxies: Sequence[Proxy], stats: ArchStats) -> list[float]:
    """Scores on one arch: graph proxies share sub-expressions, others go one by one."""
    out = [math.nan if isinstance(p, GraphProxy) else safe_score(p, stats) for p in proxies]
    graph = [i for i, p in enumerate(proxies) if isinstance(p, GraphProxy)]
    for i, v in zip(graph, score_population([proxies[i] for i in graph], stats)):  # type: ignore[misc]
        out[i] = v
    return out


class ScoringWorker:
    """Owns a shard of archs of one space and their statistics (in memory)."""

    def __init__(self, space: str, cfg: ScoringConfig, threads: int = 0) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        self.provider = StatsProvider(space, cfg)
        self.held: list[ArchStats] = []

    def load(self, archs: list[dict], families: list[str] | None = None) -> int:
        """Compute or load the statistics of ``archs`` (replacing held ones); their count."""
        fams = list(BASE_FAMILIES) if families is None else list(families)
        self.held = [self.provider.get(a, fams) for a in archs]
        return len(self.held)

    def warm(self, archs: list[dict], families: list[str]) -> int:
        """Compute and cache the statistics of ``archs`` without holding them; their count."""
        for a in archs:
            self.provider.get(a, list(families))
        return len(archs)

    def _score_all(self, proxies: Sequence[Proxy]) -> list[list[float]]:
        return [score_proxies(proxies, s) for s in self.held]

    def score(self, exprs: list[str]) -> list[list[float]]:
        """(archs x proxies) scores of expression strings; NaN where a proxy fails."""
        return self._score_all([GraphProxy(e, parse(e)) for e in exprs])

    def score_named(self, names: list[str]) -> list[list[float]]:
        """(archs x proxies) scores of zoo names or proxy files (per-arch proxies only)."""
        proxies = [resolve_proxy(n) for n in names]
        fused = [p.name for p in proxies if is_fused(p)]
        if fused:
            raise ValueError(f"fused proxy {fused[0]!r} needs every arch: score it with Backend.score_named")
        return self._score_all(proxies)

    def drop(self) -> None:
        """Forget the held statistics."""
        self.held = []


class Backend(Protocol):
    """Scores proxies on a fixed list of archs; matrices are (proxies x archs). ``start_load`` and
    ``submit`` start the work and return a call that waits for it (so several backends can run
    at once); ``load`` and ``score`` wait at once. ``score_named`` fuses a fused proxy
    (``autoprox.fuse``) over all the loaded archs."""

    def start_load(self, archs: Sequence[dict], families: Sequence[str] | None = None) -> Callable[[], Any]: ...

    def load(self, archs: Sequence[dict], families: Sequence[str] | None = None) -> None: ...

    def warm(self, archs: Sequence[dict], families: Sequence[str]) -> None: ...

    def submit(self, exprs: Sequence[str]) -> Callable[[], np.ndarray]: ...

    def score(self, exprs: Sequence[str]) -> np.ndarray: ...

    def score_named(self, names: Sequence[str]) -> np.ndarray: ...

    def close(self) -> None: ...


def score_named_fused(names: Sequence[str], score: Callable[[list[str]], np.ndarray],
                      score_named: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """(proxies x archs) of zoo names/files: fused proxies' parts go to ``score`` as expressions
    (one call for all) and are fused over all archs; the others go to ``score_named``."""
    proxies = [resolve_proxy(n) for n in names]
    fused = [i for i, p in enumerate(proxies) if is_fused(p)]
    if not fused:
        return score_named(list(names))
    plain = [i for i in range(len(names)) if i not in fused]
    exprs = [str(part.expr) for i in fused for part in proxies[i].parts]  # type: ignore[attr-defined]
    parts = score(exprs)
    out = np.full((len(names), parts.shape[1]), math.nan)
    if plain:
        out[plain] = score_named([names[i] for i in plain])
    row = 0
    for i in fused:
        n = len(proxies[i].parts)  # type: ignore[attr-defined]
        out[i] = proxies[i].fuse(parts[row:row + n])  # type: ignore[attr-defined]
        row += n
    return out


def _matrix(rows: list[list[float]], n_proxies: int) -> np.ndarray:
    """(archs x proxies) nested lists -> (proxies x archs) float array."""
    return np.array(rows, dtype=np.float64).reshape(len(rows), n_proxies).T


class _Waiting:
    """``load`` and ``score`` of a backend as its ``start_load`` / ``submit``, waited for."""

    def load(self, archs: Sequence[dict], families: Sequence[str] | None = None) -> None:
        self.start_load(archs, families)()  # type: ignore[attr-defined]

    def score(self, exprs: Sequence[str]) -> np.ndarray:
        return self.submit(exprs)()  # type: ignore[attr-defined]


class SerialBackend(_Waiting):
    """One in-process ``ScoringWorker``: the test and debug path."""

    def __init__(self, space: str, cfg: ScoringConfig, threads: int = 0) -> None:
        self.worker = ScoringWorker(space, cfg, threads)

    def start_load(self, archs: Sequence[dict], families: Sequence[str] | None = None) -> Callable[[], Any]:
        self.worker.load(list(archs), None if families is None else list(families))  # in-process: done
        return lambda: None

    def warm(self, archs: Sequence[dict], families: Sequence[str]) -> None:
        self.worker.warm(list(archs), list(families))

    def submit(self, exprs: Sequence[str]) -> Callable[[], np.ndarray]:
        m = _matrix(self.worker.score(list(exprs)), len(exprs))  # in-process: done at once
        return lambda: m

    def score_named(self, names: Sequence[str]) -> np.ndarray:
        return score_named_fused(names, self.score,
                                 lambda ns: _matrix(self.worker.score_named(ns), len(ns)))

    def close(self) -> None:
        self.worker.drop()


class RayBackend(_Waiting):
    """Ray actors wrapping ``ScoringWorker``, archs sharded round-robin; dead actors replaced."""

    def __init__(self, space: str, cfg: ScoringConfig, workers: int = 2, address: str | None = None,
                 threads_per_worker: int = 1, max_retries: int = 2) -> None:
        import ray

        self.owns_ray = not ray.is_initialized()
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(address=address, ignore_reinit_error=True)
        gpus = 1 if cfg.device.startswith("cuda") else 0
        self._cls = ray.remote(num_cpus=1, num_gpus=gpus)(ScoringWorker)
        self._args = (space, cfg, threads_per_worker)
        self.max_retries = max_retries
        self.actors = [self._spawn() for _ in range(workers)]
        self.shards: list[list[dict]] = [[] for _ in range(workers)]
        self.families: list[str] | None = None

    def _spawn(self) -> Any:
        return self._cls.remote(*self._args)

    def _respawn(self, i: int) -> None:
        """Replace actor ``i`` by a fresh one holding the same shard."""
        import ray

        ray.kill(self.actors[i])
        self.actors[i] = self._spawn()
        ray.get(self.actors[i].load.remote(self.shards[i], self.families))

    def _submit(self, method: str, args_for: Callable[[int], tuple]) -> Callable[[], list[Any]]:
        """Start ``method(*args_for(i))`` on every actor ``i``; the returned call waits for the
        results, respawning a dead actor (re-loading its shard) and retrying up to ``max_retries``."""
        refs = [getattr(a, method).remote(*args_for(i)) for i, a in enumerate(self.actors)]
        return lambda: self._gather(refs, method, args_for)

    def _gather(self, refs: list[Any], method: str, args_for: Callable[[int], tuple]) -> list[Any]:
        import ray
        from ray.exceptions import RayActorError

        out = []
        for i, ref in enumerate(refs):
            for attempt in range(self.max_retries + 1):
                try:
                    out.append(ray.get(ref))
                    break
                except RayActorError:
                    if attempt == self.max_retries:
                        raise
                    self._respawn(i)
                    ref = getattr(self.actors[i], method).remote(*args_for(i))
        return out

    def _call(self, method: str, args_for: Callable[[int], tuple]) -> list[Any]:
        return self._submit(method, args_for)()

    def start_load(self, archs: Sequence[dict], families: Sequence[str] | None = None) -> Callable[[], Any]:
        n = len(self.actors)
        self.shards = [list(archs[i::n]) for i in range(n)]
        self.families = None if families is None else list(families)
        return self._submit("load", lambda i: (self.shards[i], self.families))

    def warm(self, archs: Sequence[dict], families: Sequence[str]) -> None:
        """Compute and cache ``archs``' statistics on the actors (round-robin), holding nothing."""
        n = len(self.actors)
        self._call("warm", lambda i: (list(archs[i::n]), list(families)))

    def _assemble(self, parts: list[list[list[float]]], n_proxies: int) -> np.ndarray:
        """Per-actor (archs x proxies) results back to (proxies x archs) in load order."""
        n_archs = sum(len(s) for s in self.shards)
        out = np.full((n_proxies, n_archs), math.nan)
        for i, rows in enumerate(parts):
            out[:, i::len(self.actors)] = _matrix(rows, n_proxies)
        return out

    def _start(self, method: str, specs: Sequence[str]) -> Callable[[], np.ndarray]:
        args = (list(specs),)
        wait = self._submit(method, lambda i: args)
        return lambda: self._assemble(wait(), len(args[0]))

    def submit(self, exprs: Sequence[str]) -> Callable[[], np.ndarray]:
        return self._start("score", exprs)

    def score_named(self, names: Sequence[str]) -> np.ndarray:
        return score_named_fused(names, self.score, lambda ns: self._start("score_named", ns)())

    def close(self) -> None:
        """Kill the actors; shut Ray down only if this backend started it."""
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.owns_ray:
            ray.shutdown()


def make_backend(kind: str, space: str, cfg: ScoringConfig, workers: int = 2,
                 address: str | None = None) -> Backend:
    """A ``"serial"`` or ``"ray"`` backend for ``space``."""
    if kind == "serial":
        return SerialBackend(space, cfg)
    if kind == "ray":
        return RayBackend(space, cfg, workers=workers, address=address)
    raise ValueError(f"unknown backend {kind!r}; choices: serial, ray")
