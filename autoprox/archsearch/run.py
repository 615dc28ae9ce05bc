"""Training-free ViT search with a (discovered) proxy: ``autoprox search``.

Candidates are legal archs of a space inside params/FLOPs windows (checked analytically
before any model is built), proposed by ``random`` sampling (TF-TAS style: best of N) or
``evolution`` (``search.propose``), or, with ``bench_only``, the labelled ViT-Bench-101
archs. They are scored in chunks through the backend seam; the run checkpoints after every
chunk so ``resume`` continues a killed run and ends exactly where an unbroken one would.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from autoprox.core.checkpoint import clean_temporaries, load_state, rng_from_json, rng_to_json, save_state
from autoprox.core.config import config_diff, save_config, to_dict
from autoprox.core.io import atomic_write_text, check_writable_dir
from autoprox.core.runs import check_owner, claimed
from autoprox.data.benchmark import Benchmark, load_archs
from autoprox.parallel.backends import Backend, make_backend, score_proxies
from autoprox.parallel.session import CONNECT_TIMEOUT, check_workers
from autoprox.proxy.spec import Proxy, check_space, resolve, resolve_all
from autoprox.archsearch.config import SearchConfig, SearchResult, measure, window_text, within
from autoprox.archsearch.propose import State, check_reachable, order_key, propose, ranked
from autoprox.archsearch.report import history_csv, regret_rows, write_result
from autoprox.spaces import ArchError, SearchSpace, get_space
from autoprox.stats.provider import RESUME_FREE as SCORING_RESUME_FREE, ScoringConfig

STATE_FORMAT = "autoprox-search/1"
RESUME_FREE = tuple(f"scoring.{k}" for k in SCORING_RESUME_FREE)  # may change on resume: same results
ProgressFn = Callable[[int, int, "float | None"], None]


class _Scorer:
    """One backend for the whole run (created on first use); data-free proxies stay in-process.
    Workers receive the proxy's expressions only; a fused proxy is combined here."""

    def __init__(self, proxy: Proxy, space: str, scoring: ScoringConfig, backend: str,
                 workers: int, address: str | None, timings: dict[str, float],
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.proxy, self.space, self.scoring = proxy, space, scoring
        self.families = sorted(proxy.families)
        self.kind = backend if self.families else "serial"  # no models to build: Ray would only cost
        self.workers, self.address, self.t, self.timeout = workers, address, timings, connect_timeout
        self.be: Backend | None = None

    def start(self) -> None:
        """Start the backend (joining or starting Ray) if it is not running yet."""
        if self.be is None:
            self.be = make_backend(self.kind, self.space, self.scoring, self.workers, self.address,
                                   connect_timeout=self.timeout)

    def __call__(self, archs: Sequence[dict]) -> list[float]:
        t0 = time.perf_counter()
        self.start()
        t1 = time.perf_counter()
        self.be.load(list(archs), self.families)
        t2 = time.perf_counter()
        m = score_proxies(self.be, [self.proxy])
        t3 = time.perf_counter()
        for k, dt in (("backend_start", t1 - t0), ("stats", t2 - t1), ("score", t3 - t2)):
            self.t[k] = self.t.get(k, 0.0) + dt
        return [float(v) for v in np.asarray(m, dtype=np.float64).reshape(-1)]

    def close(self) -> None:
        if self.be is not None:
            self.be.close()
            self.be = None


def _save_state(out: Path, cfg: SearchConfig, proxy: Proxy, st: State) -> None:
    """``state.json`` (the truth for resume), ``history.csv`` and ``config.yaml``, each atomically."""
    doc = {"format": STATE_FORMAT, "config": to_dict(cfg), "proxy_hash": proxy.hash,
           "rng": rng_to_json(st.rng), "exhausted": st.exhausted, "done": st.done,
           "history": [{**h, "score": h["score"] if math.isfinite(h["score"]) else None}
                       for h in st.history]}
    save_config(replace(cfg, scoring=cfg.scoring.resolved()), out / "config.yaml")
    atomic_write_text(out / "history.csv", history_csv(st.history))
    save_state(out / "state.json", doc)


def _load_state(out: Path, cfg: SearchConfig, proxy: Proxy) -> State | None:
    """The checkpoint in ``out`` (None: there is none); refused if it belongs to another config or proxy."""
    p = out / "state.json"
    doc = load_state(p)
    if doc is None:
        return None
    if doc.get("format") != STATE_FORMAT:
        raise ValueError(f"cannot resume from {p}: not an autoprox search checkpoint")
    diff = config_diff(SearchConfig, doc["config"], cfg, RESUME_FREE)
    if diff:
        raise ValueError(f"cannot resume {out}: the config differs from the saved run: " + "; ".join(diff))
    if doc.get("proxy_hash") != proxy.hash:
        raise ValueError(f"cannot resume {out}: proxy {cfg.proxy!r} changed since the run started")
    space = get_space(cfg.space)
    hist = [{**h, "score": math.nan if h["score"] is None else float(h["score"])} for h in doc["history"]]
    return State(rng_from_json(doc["rng"]), hist, {space.key(h["arch"]) for h in hist}, bool(doc["exhausted"]),
                 bool(doc["done"]))


def _start(cfg: SearchConfig, proxy: Proxy, out: Path | None, resume: bool) -> State:
    """A fresh state, or the saved one when resuming (fresh when killed before the first
    checkpoint); refuses to overwrite a run. Creates nothing."""
    if out is None:
        if resume:
            raise ValueError("resume needs an output folder")
        return State(random.Random(cfg.seed))
    check_writable_dir(out)
    check_owner(out, "search")
    if resume:
        st = _load_state(out, cfg, proxy)
        return st if st is not None else State(random.Random(cfg.seed))
    if (out / "state.json").exists() or (out / "result.yaml").exists():
        raise ValueError(f"{out} already holds a search run: resume it (--resume; resume=True in Python) "
                         f"or choose another folder (--out; out=)")
    return State(random.Random(cfg.seed))


def _bench_pool(cfg: SearchConfig, space: SearchSpace) -> tuple[Benchmark, list[str], list[dict]]:
    """Benchmark, targets, and its labelled archs inside the windows (with their record index)."""
    bench, archs, targets = load_archs(cfg.space, cfg.bench, targets=cfg.targets)
    pool = []
    for i, a in enumerate(archs):
        p, f = measure(cfg, space, a)
        if within(cfg, p, f):
            pool.append({"arch": a, "num_params": p, "flops": f, "origin": "bench", "bench_index": i})
    if not pool:
        raise ValueError(f"no benchmark arch of {cfg.space} lies within {window_text(cfg)}")
    return bench, targets, pool


def _step(cfg: SearchConfig, space: SearchSpace, st: State, total: int, pool: list[dict] | None,
          score: _Scorer, t: dict[str, float]) -> None:
    """Propose, score and record one chunk."""
    n = min(cfg.chunk, total - len(st.history))
    t0 = time.perf_counter()
    props = propose(cfg, space, st, n, pool) if n > 0 else []
    t["sample"] = t.get("sample", 0.0) + time.perf_counter() - t0
    scores = score([c["arch"] for c in props]) if props else []
    for c, s in zip(props, scores):
        st.history.append({"index": len(st.history), **c, "score": s})
    st.exhausted = st.exhausted or len(props) < n
    st.done = len(st.history) >= total or st.exhausted


def search(cfg: SearchConfig, out: Path | str | None = None, resume: bool = False,
           backend: str = "serial", workers: int = 2, address: str | None = None,
           progress: ProgressFn | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> SearchResult:
    """Run (or ``resume``) a search; with ``out``, checkpoint there and write ``result.yaml``,
    ``history.csv``, ``config.yaml`` and ``scores.png``. ``progress(done, total, best)`` follows every chunk."""
    out = None if out is None else Path(out)
    check_workers(workers)
    space, proxy = get_space(cfg.space), resolve(cfg.proxy)
    check_space([proxy], cfg.space)
    bench, targets, pool = _bench_pool(cfg, space) if cfg.bench_only else (None, [], None)
    if proxy.fused:  # fused scores rank archs among those scored together
        if pool is None:
            raise ValueError(f"proxy {proxy.name!r} fuses its parts across archs, so its scores are only "
                             f"comparable within one scored set: use --bench-only or rank_archs() on a list")
        cfg = replace(cfg, chunk=max(len(pool), 1))  # the whole pool in one chunk
    if pool is not None:  # the whole labelled pool is scored: that is the budget, and the targets used
        cfg = replace(cfg, budget=max(len(pool), 1), targets=tuple(targets))
    total = len(pool) if pool is not None else cfg.budget
    st = _start(cfg, proxy, out, resume)
    restored = len(st.history)
    t: dict[str, float] = {}
    # fresh candidates are seen once: caching them (~15 MB each) would only fill the disk, and
    # without the cache only what the proxy needs is extracted; labelled archs use it as configured
    scoring = cfg.scoring if cfg.bench_only else replace(cfg.scoring, use_cache=False)
    scorer = _Scorer(proxy, cfg.space, scoring, backend, workers, address, t, connect_timeout)
    start = time.perf_counter()
    with ExitStack() as folder:  # the run folder: made, recorded and locked until the run ends
        try:
            if not st.done:  # an unreachable cluster fails here, before the run folder is made
                scorer.start()
                t["backend_start"] = time.perf_counter() - start
            if out is not None:
                if not st.done and pool is None:
                    check_reachable(cfg, space)  # an impossible window: one line, no empty folder left
                folder.enter_context(claimed(out, "search"))
                clean_temporaries(out)
            while True:
                if progress is not None:
                    best = ranked(st.history, cfg.minimize)[:1]
                    progress(len(st.history), total, best[0]["score"] if best else None)
                if st.done:
                    break
                _step(cfg, space, st, total, pool, scorer, t)
                t0 = time.perf_counter()
                if out is not None:
                    _save_state(out, cfg, proxy, st)
                t["checkpoint"] = t.get("checkpoint", 0.0) + time.perf_counter() - t0
        finally:
            scorer.close()
        t["total"] = time.perf_counter() - start
        return _finish(cfg, proxy, st, bench, targets, out, t, restored)


def _finish(cfg: SearchConfig, proxy: Proxy, st: State, bench: Benchmark | None, targets: list[str],
            out: Path | None, t: dict[str, float], restored: int = 0) -> SearchResult:
    ranks = ranked(st.history, cfg.minimize)
    if not ranks:
        raise ValueError(f"proxy {proxy.name!r} scored NaN on all {len(st.history)} candidates; "
                         f"nothing to pick")
    top = [{"rank": r + 1, **{k: h[k] for k in ("index", "score", "num_params", "flops", "arch")}}
           for r, h in enumerate(ranks[:cfg.top_k])]
    regret = regret_rows(proxy.name, cfg.space, st.history, bench, targets, cfg.minimize,
                         seed=cfg.seed) if bench else None
    res = SearchResult(cfg, proxy.name, top, st.history, st.exhausted, regret, t, restored)
    if out is not None:
        write_result(out, res)
    return res


def rank_archs(proxy: str, space: str, archs: Sequence[Mapping], scoring: ScoringConfig | None = None,
               backend: str = "serial", workers: int = 2, address: str | None = None,
               num_classes: int = 100, img_size: int = 224, minimize: bool = False,
               chunk: int = 64) -> list[dict]:
    """Score a user's ``archs`` of ``space`` with ``proxy``; best first (NaN last), each with
    ``index`` (position in ``archs``), ``score``, ``num_params``, ``flops`` and canonical ``arch``."""
    cfg = SearchConfig(proxy=str(proxy), space=space, num_classes=num_classes, img_size=img_size,
                       minimize=minimize, scoring=scoring or ScoringConfig())
    sp, p = get_space(space), resolve(proxy)
    check_space([p], space)
    rows = []
    for i, a in enumerate(archs):
        try:
            arch = sp.validate(a)
        except ArchError as e:
            raise ArchError(f"arch {i}: {e}") from None
        n_params, n_flops = measure(cfg, sp, arch)
        rows.append({"index": i, "arch": arch, "num_params": n_params, "flops": n_flops})
    scorer = _Scorer(p, space, cfg.scoring, backend, workers, address, {})
    if p.fused:
        chunk = max(len(rows), 1)  # fused scores are comparable only within one scored set
    try:
        for s in range(0, len(rows), chunk):
            for r, v in zip(rows[s:s + chunk], scorer([r["arch"] for r in rows[s:s + chunk]])):
                r["score"] = v
    finally:
        scorer.close()
    return sorted(rows, key=order_key(minimize))


def bench_only_table(proxies: Sequence[str], space: str, scoring: ScoringConfig | None = None,
                     params: tuple[float, float] | None = None, flops: tuple[float, float] | None = None,
                     targets: Sequence[str] = (), bench: str | None = None, backend: str = "serial",
                     workers: int = 2, address: str | None = None, seed: int = 0) -> list[dict]:
    """Regret rows (per proxy and target) of picking the best-scoring labelled arch within the
    windows: the pick's accuracy, its rank among the eligible archs, the best accuracy, regret,
    and Kendall tau of score vs accuracy, with bootstrap intervals (resamples drawn with ``seed``,
    the same for every proxy)."""
    if not proxies:
        return []
    cfg = SearchConfig(proxy=proxies[0], space=space, params=params, flops=flops,
                       bench_only=True, bench=bench, targets=tuple(targets),
                       scoring=scoring or ScoringConfig())
    resolved = resolve_all(proxies)
    check_space(resolved, space)
    bench_, tgts, pool = _bench_pool(cfg, get_space(space))
    fams = sorted(set().union(*(p.families for p in resolved)))
    be = make_backend(backend if fams else "serial", space, cfg.scoring, workers, address)
    try:
        be.load([c["arch"] for c in pool], fams)
        matrix = score_proxies(be, resolved)
    finally:
        be.close()
    rows = []
    for p, scores in zip(resolved, matrix):
        hist = [{**c, "index": j, "score": float(s)} for j, (c, s) in enumerate(zip(pool, scores))]
        rows += regret_rows(p.name, space, hist, bench_, tgts, cfg.minimize, seed=seed)
    return rows
