"""Training-free ViT search with a (discovered) proxy: ``autoprox search``.

Candidates are legal archs of a space inside params/FLOPs windows (checked analytically
before any model is built), proposed by ``random`` sampling (TF-TAS style: best of N) or
``evolution`` (mutation and crossover of the best archs so far), or, with ``bench_only``,
the labelled ViT-Bench-101 archs. They are scored in chunks through the backend seam
(``parallel.make_backend``); the run checkpoints after every chunk so ``resume`` continues a
killed run and ends exactly where an unbroken one would.
"""
from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from .bench import BenchConfig, load_archs
from .benchmark import Benchmark
from .config import ConfigError, save_config, to_dict
from .fuse import is_fused
from .graph import GraphProxy
from .io import atomic_write_text
from .parallel import Backend, make_backend
from .scoring import Proxy, ScoringConfig
from .search_report import history_csv, regret_rows, write_result
from .spaces import ArchError, SearchSpace, get_space
from .zoo import resolve_proxy

SAMPLE_TRIES = 20000  # draws per random candidate before the window counts as unreachable/exhausted
CHILD_TRIES = 100     # mutation/crossover attempts per child before falling back to a random arch
STATE_FORMAT = "autoprox-search/1"
RESUME_FREE = ("scoring.cache_dir", "scoring.use_cache")  # may change on resume: same results
Progress = Callable[[int, int, "float | None"], None]
_NUM = r"\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)?\s*"


@dataclass(frozen=True)
class SearchConfig:
    """One search run. Windows are (min, max) in millions of parameters / multiply-accumulates
    of the deployed model (``num_classes`` classes, ``img_size`` px input)."""

    proxy: str
    space: str = "autoformer"
    params: tuple[float, float] | None = None
    flops: tuple[float, float] | None = None
    budget: int = 1000
    strategy: Literal["random", "evolution"] = "random"
    top_k: int = 5
    seed: int = 0
    chunk: int = 32
    population: int = 32
    parents: int = 8
    mutation_prob: float = 0.3
    crossover_prob: float = 0.5
    minimize: bool = False
    num_classes: int = 100
    img_size: int = 224
    bench_only: bool = False
    bench: str | None = None
    targets: tuple[str, ...] = ()
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self) -> None:
        for name in ("budget", "top_k", "chunk", "population", "parents", "num_classes", "img_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"search config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("mutation_prob", "crossover_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"search config: {name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("params", "flops"):
            w = getattr(self, name)
            if w is not None and (len(w) != 2 or not 0 <= w[0] <= w[1]):
                raise ConfigError(f"search config: {name} window must be [min, max] with "
                                  f"0 <= min <= max (millions), got {list(w)}")
        get_space(self.space)  # unknown space: error naming the known ones


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a run: the best archs (best first) and every scored candidate."""

    config: SearchConfig
    proxy: str
    top: list[dict]
    history: list[dict]
    exhausted: bool = False
    regret: list[dict] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> dict:
        return self.top[0]


def parse_window(text: str, what: str = "--params") -> tuple[float, float]:
    """``"4-9"`` (millions) -> (4.0, 9.0); ``"4-"`` / ``"-9"`` leave one side open."""
    m = re.fullmatch(_NUM + "-" + _NUM, text or "")
    if not m or (m.group(1) is None and m.group(2) is None):
        raise ValueError(f"{what} {text!r}: expected MIN-MAX in millions, e.g. 4-9 or 2.5-6")
    lo = float(m.group(1)) if m.group(1) else 0.0
    hi = float(m.group(2)) if m.group(2) else math.inf
    if lo > hi:
        raise ValueError(f"{what} {text!r}: min {lo} is larger than max {hi}")
    return lo, hi


def measure(cfg: SearchConfig, space: SearchSpace, arch: Mapping) -> tuple[int, int]:
    """Analytic (params, FLOPs) of ``arch`` as deployed; no model is built."""
    return (space.num_params(arch, cfg.num_classes, cfg.img_size),
            space.flops(arch, cfg.num_classes, cfg.img_size))


def within(cfg: SearchConfig, n_params: int, n_flops: int) -> bool:
    """Whether counts fall inside the config's windows (bounds inclusive)."""
    return all(w is None or w[0] * 1e6 <= v <= w[1] * 1e6
               for w, v in ((cfg.params, n_params), (cfg.flops, n_flops)))


def _window_text(cfg: SearchConfig) -> str:
    parts = [f"{name} {w[0]:g}-{w[1]:g} M" for name, w in (("params", cfg.params), ("FLOPs", cfg.flops))
             if w is not None]
    return ", ".join(parts) or "no window"


class _Probe:
    """Ranges of params/FLOPs seen while sampling, for an 'unreachable window' message."""

    def __init__(self) -> None:
        self.lo, self.hi = [math.inf, math.inf], [0.0, 0.0]

    def add(self, p: int, f: int) -> None:
        for i, v in enumerate((p, f)):
            self.lo[i], self.hi[i] = min(self.lo[i], v), max(self.hi[i], v)

    def text(self) -> str:
        return (f"sampled archs have {self.lo[0] / 1e6:.2f}-{self.hi[0] / 1e6:.2f} M params and "
                f"{self.lo[1] / 1e6:.0f}-{self.hi[1] / 1e6:.0f} M FLOPs")


def _candidate(cfg: SearchConfig, space: SearchSpace, arch: Mapping, seen: set[str], origin: str,
               probe: _Probe | None = None) -> dict | None:
    """A proposal record if ``arch`` is unseen and inside the windows (then marked seen)."""
    key = space.key(arch)
    if key in seen:
        return None
    p, f = measure(cfg, space, arch)
    if probe is not None:
        probe.add(p, f)
    if not within(cfg, p, f):
        return None
    seen.add(key)
    return {"arch": space.validate(arch), "num_params": p, "flops": f, "origin": origin}


def _sample_legal(cfg: SearchConfig, space: SearchSpace, rng: random.Random, seen: set[str],
                  first: bool) -> dict | None:
    """Rejection-sample an unseen legal arch; None when the window looks exhausted."""
    probe = _Probe()
    for _ in range(SAMPLE_TRIES):
        c = _candidate(cfg, space, space.sample(rng), seen, "random", probe)
        if c is not None:
            return c
    if first:
        raise ValueError(f"no {cfg.space} arch within {_window_text(cfg)} in {SAMPLE_TRIES} samples "
                         f"({probe.text()} at {cfg.num_classes} classes, {cfg.img_size} px); "
                         f"widen --params/--flops")
    return None


def _child(cfg: SearchConfig, space: SearchSpace, rng: random.Random, pool: list[dict],
           seen: set[str]) -> dict | None:
    """A legal unseen child of the parent ``pool`` by crossover or mutation, else None."""
    for _ in range(CHILD_TRIES):
        if len(pool) >= 2 and rng.random() < cfg.crossover_prob:
            a, b = rng.sample(pool, 2)
            c = _candidate(cfg, space, space.crossover(a, b, rng), seen, "crossover")
        else:
            c = _candidate(cfg, space, space.mutate(rng.choice(pool), rng, cfg.mutation_prob), seen,
                           "mutation")
        if c is not None:
            return c
    return None


def _order_key(minimize: bool) -> Callable[[dict], tuple]:
    """Sort key: best score first, NaN last, ties by candidate index."""
    def key(h: dict) -> tuple:
        s = h["score"]
        bad = s is None or not math.isfinite(s)
        return (bad, 0.0 if bad else (s if minimize else -s), h["index"])
    return key


def _ranked(history: list[dict], minimize: bool) -> list[dict]:
    """Candidates with a finite score, best first."""
    return [h for h in sorted(history, key=_order_key(minimize))
            if h["score"] is not None and math.isfinite(h["score"])]


@dataclass
class _State:
    rng: random.Random
    history: list[dict] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    exhausted: bool = False
    done: bool = False


def _propose(cfg: SearchConfig, space: SearchSpace, st: _State, n: int,
             pool_from: list[dict] | None) -> list[dict]:
    """Up to ``n`` new candidates; fewer when the (windowed) space is exhausted."""
    if pool_from is not None:  # bench-only: the next labelled archs, in benchmark order
        return [dict(c) for c in pool_from[len(st.history):len(st.history) + n]]
    pool = [h["arch"] for h in _ranked(st.history, cfg.minimize)[:cfg.parents]]
    out: list[dict] = []
    for _ in range(n):
        evolve = cfg.strategy == "evolution" and pool and len(st.history) + len(out) >= cfg.population
        c = _child(cfg, space, st.rng, pool, st.seen) if evolve else None
        if c is None:
            c = _sample_legal(cfg, space, st.rng, st.seen, first=not st.history and not out)
        if c is None:
            break
        out.append(c)
    return out


class _Scorer:
    """One backend for the whole run (created on first use); data-free proxies stay in-process."""

    def __init__(self, proxy: Proxy, spec: str, space: str, scoring: ScoringConfig, backend: str,
                 workers: int, address: str | None, timings: dict[str, float]) -> None:
        self.proxy, self.spec, self.space, self.scoring = proxy, spec, space, scoring
        self.families = sorted(proxy.families)
        self.kind = backend if self.families else "serial"  # no models to build: Ray would only cost
        self.workers, self.address, self.t = workers, address, timings
        self.be: Backend | None = None

    def __call__(self, archs: Sequence[dict]) -> list[float]:
        t0 = time.perf_counter()
        if self.be is None:
            self.be = make_backend(self.kind, self.space, self.scoring, self.workers, self.address)
        t1 = time.perf_counter()
        self.be.load(list(archs), self.families)
        t2 = time.perf_counter()
        if isinstance(self.proxy, GraphProxy):  # expression text: no proxy file needed on workers
            m = self.be.score([str(self.proxy.expr)])
        else:
            m = self.be.score_named([self.spec])
        t3 = time.perf_counter()
        for k, dt in (("backend_start", t1 - t0), ("stats", t2 - t1), ("score", t3 - t2)):
            self.t[k] = self.t.get(k, 0.0) + dt
        return [float(v) for v in np.asarray(m, dtype=np.float64).reshape(-1)]

    def close(self) -> None:
        if self.be is not None:
            self.be.close()
            self.be = None


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def _proxy_hash(proxy: Proxy) -> str | None:
    return proxy.hash if isinstance(proxy, GraphProxy) else None


def _save_state(out: Path, cfg: SearchConfig, proxy: Proxy, st: _State) -> None:
    """``state.json`` (the truth for resume), ``history.csv`` and ``config.yaml``, each atomically."""
    version, internal, gauss = st.rng.getstate()
    doc = {"format": STATE_FORMAT, "config": to_dict(cfg), "proxy_hash": _proxy_hash(proxy),
           "rng": [version, list(internal), gauss], "exhausted": st.exhausted, "done": st.done,
           "history": [{**h, "score": h["score"] if math.isfinite(h["score"]) else None}
                       for h in st.history]}
    save_config(cfg, out / "config.yaml")
    atomic_write_text(out / "history.csv", history_csv(st.history))
    atomic_write_text(out / "state.json", json.dumps(doc))


def _load_state(out: Path, cfg: SearchConfig, proxy: Proxy) -> _State:
    """The checkpoint in ``out``; refused if it belongs to a different config or proxy."""
    p = out / "state.json"
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot resume from {p}: {e}") from None
    if doc.get("format") != STATE_FORMAT:
        raise ValueError(f"cannot resume from {p}: not an autoprox search checkpoint")
    saved, now = _flat(doc["config"]), _flat(to_dict(cfg))
    diff = [f"{k}: {saved.get(k)!r} (saved) vs {now.get(k)!r} (now)" for k in sorted(set(saved) | set(now))
            if k not in RESUME_FREE and saved.get(k) != now.get(k)]
    if diff:
        raise ValueError(f"cannot resume {out}: the config differs from the saved run: " + "; ".join(diff))
    if doc.get("proxy_hash") != _proxy_hash(proxy):
        raise ValueError(f"cannot resume {out}: proxy {cfg.proxy!r} changed since the run started")
    rng = random.Random()
    version, internal, gauss = doc["rng"]
    rng.setstate((version, tuple(internal), gauss))
    space = get_space(cfg.space)
    hist = [{**h, "score": math.nan if h["score"] is None else float(h["score"])} for h in doc["history"]]
    return _State(rng, hist, {space.key(h["arch"]) for h in hist}, bool(doc["exhausted"]), bool(doc["done"]))


def _start(cfg: SearchConfig, proxy: Proxy, out: Path | None, resume: bool) -> _State:
    """A fresh state, or the saved one when resuming; refuses to overwrite a run."""
    if out is None:
        if resume:
            raise ValueError("resume needs an output folder")
        return _State(random.Random(cfg.seed))
    if resume:
        if not (out / "state.json").exists():
            raise FileNotFoundError(f"nothing to resume: {out / 'state.json'} does not exist")
        return _load_state(out, cfg, proxy)
    if (out / "state.json").exists() or (out / "result.yaml").exists():
        raise ValueError(f"{out} already holds a search run; pass --resume to continue it "
                         f"or choose another --out")
    return _State(random.Random(cfg.seed))


def _bench_pool(cfg: SearchConfig, space: SearchSpace) -> tuple[Benchmark, list[str], list[dict]]:
    """Benchmark, targets, and its labelled archs inside the windows (with their record index)."""
    bench, archs, targets = load_archs(BenchConfig(space=cfg.space, bench=cfg.bench,
                                                   targets=cfg.targets, scoring=cfg.scoring))
    pool = []
    for i, a in enumerate(archs):
        p, f = measure(cfg, space, a)
        if within(cfg, p, f):
            pool.append({"arch": a, "num_params": p, "flops": f, "origin": "bench", "bench_index": i})
    if not pool:
        raise ValueError(f"no benchmark arch of {cfg.space} lies within {_window_text(cfg)}")
    return bench, targets, pool


def _step(cfg: SearchConfig, space: SearchSpace, st: _State, total: int, pool: list[dict] | None,
          score: _Scorer, t: dict[str, float]) -> None:
    """Propose, score and record one chunk."""
    n = min(cfg.chunk, total - len(st.history))
    t0 = time.perf_counter()
    props = _propose(cfg, space, st, n, pool) if n > 0 else []
    t["sample"] = t.get("sample", 0.0) + time.perf_counter() - t0
    scores = score([c["arch"] for c in props]) if props else []
    for c, s in zip(props, scores):
        st.history.append({"index": len(st.history), **c, "score": s})
    st.exhausted = st.exhausted or len(props) < n
    st.done = len(st.history) >= total or st.exhausted


def search(cfg: SearchConfig, out: Path | str | None = None, resume: bool = False,
           backend: str = "serial", workers: int = 2, address: str | None = None,
           progress: Progress | None = None) -> SearchResult:
    """Run (or ``resume``) a search; with ``out``, checkpoint there and write ``result.yaml``,
    ``history.csv`` and ``config.yaml``. ``progress(done, total, best)`` follows every chunk."""
    out = None if out is None else Path(out)
    space, proxy = get_space(cfg.space), resolve_proxy(cfg.proxy)
    bench, targets, pool = _bench_pool(cfg, space) if cfg.bench_only else (None, [], None)
    if is_fused(proxy):  # fused scores rank archs among those scored together
        if pool is None:
            raise ValueError(f"proxy {proxy.name!r} fuses its parts across archs, so its scores are only "
                             f"comparable within one scored set: use --bench-only or rank_archs() on a list")
        cfg = replace(cfg, chunk=max(len(pool), 1))  # the whole pool in one chunk
    total = len(pool) if pool is not None else cfg.budget
    st = _start(cfg, proxy, out, resume)
    t: dict[str, float] = {}
    # fresh candidates are seen once: caching them (~15 MB each) would only fill the disk, and
    # without the cache only what the proxy needs is extracted; labelled archs use it as configured
    scoring = cfg.scoring if cfg.bench_only else replace(cfg.scoring, use_cache=False)
    scorer = _Scorer(proxy, cfg.proxy, cfg.space, scoring, backend, workers, address, t)
    start = time.perf_counter()
    try:
        while True:
            if progress is not None:
                best = _ranked(st.history, cfg.minimize)[:1]
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
    return _finish(cfg, proxy, st, bench, targets, out, t)


def _finish(cfg: SearchConfig, proxy: Proxy, st: _State, bench: Benchmark | None, targets: list[str],
            out: Path | None, t: dict[str, float]) -> SearchResult:
    ranked = _ranked(st.history, cfg.minimize)
    if not ranked:
        raise ValueError(f"proxy {proxy.name!r} scored NaN on all {len(st.history)} candidates; "
                         f"nothing to pick")
    top = [{"rank": r + 1, **{k: h[k] for k in ("index", "score", "num_params", "flops", "arch")}}
           for r, h in enumerate(ranked[:cfg.top_k])]
    regret = regret_rows(proxy.name, cfg.space, ranked[0], st.history, bench, targets) if bench else None
    res = SearchResult(cfg, proxy.name, top, st.history, st.exhausted, regret, t)
    if out is not None:
        write_result(out / "result.yaml", res)
    return res


def rank_archs(proxy: str, space: str, archs: Sequence[Mapping], scoring: ScoringConfig | None = None,
               backend: str = "serial", workers: int = 2, address: str | None = None,
               num_classes: int = 100, img_size: int = 224, minimize: bool = False,
               chunk: int = 64) -> list[dict]:
    """Score a user's ``archs`` of ``space`` with ``proxy``; best first (NaN last), each with
    ``index`` (position in ``archs``), ``score``, ``num_params``, ``flops`` and canonical ``arch``."""
    cfg = SearchConfig(proxy=proxy, space=space, num_classes=num_classes, img_size=img_size,
                       minimize=minimize, scoring=scoring or ScoringConfig())
    sp, p = get_space(space), resolve_proxy(proxy)
    rows = []
    for i, a in enumerate(archs):
        try:
            arch = sp.validate(a)
        except ArchError as e:
            raise ArchError(f"arch {i}: {e}") from None
        n_params, n_flops = measure(cfg, sp, arch)
        rows.append({"index": i, "arch": arch, "num_params": n_params, "flops": n_flops})
    scorer = _Scorer(p, proxy, space, cfg.scoring, backend, workers, address, {})
    if is_fused(p):
        chunk = max(len(rows), 1)  # fused scores are comparable only within one scored set
    try:
        for s in range(0, len(rows), chunk):
            for r, v in zip(rows[s:s + chunk], scorer([r["arch"] for r in rows[s:s + chunk]])):
                r["score"] = v
    finally:
        scorer.close()
    return sorted(rows, key=_order_key(minimize))


def bench_only_table(proxies: Sequence[str], space: str, scoring: ScoringConfig | None = None,
                     params: tuple[float, float] | None = None, flops: tuple[float, float] | None = None,
                     targets: Sequence[str] = (), bench: str | None = None, backend: str = "serial",
                     workers: int = 2, address: str | None = None) -> list[dict]:
    """Regret rows (per proxy and target) of picking the best-scoring labelled arch within the
    windows: the pick's accuracy, its rank among the eligible archs, the best accuracy, regret."""
    if not proxies:
        return []
    cfg = SearchConfig(proxy=proxies[0], space=space, params=params, flops=flops,
                       bench_only=True, bench=bench, targets=tuple(targets),
                       scoring=scoring or ScoringConfig())
    resolved = [resolve_proxy(p) for p in proxies]
    bench_, tgts, pool = _bench_pool(cfg, get_space(space))
    fams = sorted(set().union(*(p.families for p in resolved))) if resolved else []
    be = make_backend(backend if fams else "serial", space, cfg.scoring, workers, address)
    try:
        be.load([c["arch"] for c in pool], fams)
        exprs = [str(p.expr) if isinstance(p, GraphProxy) else None for p in resolved]
        named = [s for s, e in zip(proxies, exprs) if e is None]
        m_expr = be.score([e for e in exprs if e is not None])
        m_named = be.score_named(named) if named else None
    finally:
        be.close()
    it_e, it_n = iter(m_expr), iter(m_named if m_named is not None else [])
    rows = []
    for p, e in zip(resolved, exprs):
        scores = next(it_e) if e is not None else next(it_n)
        hist = [{**c, "index": j, "score": float(s)} for j, (c, s) in enumerate(zip(pool, scores))]
        ranked = _ranked(hist, cfg.minimize)
        if ranked:
            rows += regret_rows(p.name, space, ranked[0], hist, bench_, tgts)
        else:
            rows += [{"proxy": p.name, "space": space, "target": t, "n": len(hist), "pick": None,
                      "pick_acc": math.nan, "rank": None, "best_acc": math.nan, "regret": math.nan}
                     for t in tgts]
    return rows

