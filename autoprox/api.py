"""The Python API, re-exported lazily at top level (``import autoprox`` imports nothing heavy).

    import autoprox
    autoprox.list_proxies()                          # zoo names
    p = autoprox.get_proxy("snip")                   # a name, a proxy file or an expression
    images, labels = autoprox.default_batch()        # the default proxy batch (32 x 224 px)
    autoprox.score(model, images, labels, "snip")    # any torch ViT, freshly built
    autoprox.score(model, images, labels, "depth_width", arch=arch, space="pit")  # shape proxies
    autoprox.score_population(models, images, labels, "evolved_c100_kd", archs=archs, space="pit")  # fused
    autoprox.bench("pit", ["snip", "params"])        # rows of bench.csv
    autoprox.search(proxy="snip", space="pit", params=(2, 5), budget=100)
    autoprox.evolve("runs/quick.yaml", out="runs/quick")
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

__all__ = ["list_proxies", "get_proxy", "score", "score_population", "bench", "evolve", "search", "default_batch"]


def list_proxies() -> list[str]:
    """Names of the zoo proxies (``autoprox zoo`` shows their formulas)."""
    from autoprox.proxy.zoo import list_proxies as names
    return names()


def get_proxy(spec: Any) -> Any:
    """The proxy a zoo name, a proxy file (``best.yaml``), a genotype or an expression names
    (``autoprox.proxy.spec.resolve``); ``ValueError`` with the nearest zoo name otherwise."""
    from autoprox.proxy.spec import resolve
    return resolve(spec)


def default_batch(**overrides: Any) -> tuple[Any, Any]:
    """(images, labels) of the proxy batch every verb uses by default (synthetic, seed 0); keyword
    arguments override ``autoprox.stats.batch.BatchConfig`` fields (``size``, ``resolution``, ...)."""
    from autoprox.stats.batch import BatchConfig, make_batch
    b = make_batch(BatchConfig(**overrides))
    return b.images, b.labels


def score(model: Any, images: Any, labels: Any, proxy: Any, seed: int = 0, stats: Any = None,
          num_params: float | None = None, flops: float | None = None, arch: Any = None,
          space: str | None = None) -> float:
    """The score of a torch ``model`` (any ViT; pass a freshly built one: the SynFlow-style pass
    replaces its weights by |w|) on (``images``, ``labels``) with ``proxy`` (name, file,
    expression or proxy object). The statistics come from the registered passes the proxy reads,
    with the settings of ``stats`` (an ``autoprox.stats.base.StatsConfig``; default: the engine's),
    on the device of ``images``; the model is moved there. Weight layers are autoprox's tagged
    layers, or in an untagged model every Linear and Conv2d. ``num_params`` defaults to the
    model's parameter count. A proxy reading the arch's shape (``depth``, ``width``, ``heads``,
    ``mlp_ratio``) or ``flops`` needs ``arch`` and ``space`` (an autoprox space's arch), or
    ``flops`` given. A fused proxy ranks archs against each other: use ``score_population``."""
    from autoprox.proxy.spec import resolve
    p = resolve(proxy)
    if p.fused:
        raise ValueError(f"proxy {p.name!r} fuses its parts across archs: use "
                         f"autoprox.score_population(models, images, labels, proxy, archs=..., space=...)")
    if p.reads_arch:  # an arch surrogate: its score is read off the arch
        if arch is None:
            raise ValueError(f"proxy {p.name!r} reads the arch's choices: pass arch= (and space= to check it)")
        return score_population([model], images, labels, p, seed, stats, [arch], space)[0]
    return _part_scores(model, images, labels, p.parts, seed, stats, num_params, flops, arch, space)[0]


def score_population(models: Sequence[Any], images: Any, labels: Any, proxy: Any, seed: int = 0,
                     stats: Any = None, archs: Sequence[Any] | None = None, space: str | None = None,
                     flops: Sequence[float] | None = None) -> list[float]:
    """One score per model, as ``score``; a fused proxy fuses its parts across ``models``.
    ``archs`` (with ``space``) and ``flops``: one per model, when the proxy reads them."""
    import numpy as np
    from autoprox.proxy.spec import check_space, resolve
    p = resolve(proxy)
    check_space([p], space)
    n = len(models)
    archs_ = list(archs) if archs is not None else [None] * n
    flops_ = list(flops) if flops is not None else [None] * n
    if len(archs_) != n or len(flops_) != n:
        raise ValueError(f"archs= and flops= need one entry per model ({n})")
    if p.reads_arch and archs is None:
        raise ValueError(f"proxy {p.name!r} reads the archs' choices: pass archs= (and space= to check them)")
    rows = [_part_scores(m, images, labels, p.parts, seed, stats, None, f, a, space)
            for m, a, f in zip(models, archs_, flops_)]
    matrix = np.array(rows, dtype=float).T.reshape(len(p.parts), n)
    if p.reads_arch:
        return [float(v) for v in p.combine(matrix, _canonical(archs_, space))]
    if not p.fused:
        return [r[0] for r in rows]
    return [float(v) for v in p.combine(matrix)]


def _canonical(archs: Sequence[Any], space: str | None) -> list[Any]:
    """``archs`` as ``space`` writes them (as benchmarks and searches hand them to proxies); as given
    without a space."""
    from autoprox.spaces import get_space
    if space is None:
        return list(archs)
    sp = get_space(space)
    return [sp.validate(a) for a in archs]


def _arch_scalars(model: Any, images: Any, used: set, flops: float | None, arch: Any,
                  space: str | None) -> dict:
    """The data-free scalars the proxy reads, from ``arch`` in ``space``; one-line errors naming
    the arguments when they are missing."""
    from autoprox.spaces import get_space
    from autoprox.spaces.base import ARCH_SCALARS
    from autoprox.stats.collect import weight_layers
    shape = sorted(used & set(ARCH_SCALARS))
    need_flops = "flops" in used and flops is None
    if not (shape or need_flops):
        return {} if flops is None else {"flops": float(flops)}
    if arch is None or space is None:
        what = ", ".join(shape + (["flops"] if need_flops else []))
        raise ValueError(f"the proxy reads the arch's {what}: pass arch= and space= (an autoprox space's arch)"
                         + (" or flops=" if not shape else ""))
    sp = get_space(space)
    a = sp.validate(arch)
    out = dict(sp.arch_scalars(a))
    classes = weight_layers(model)[-1][0].weight.shape[0]
    out["flops"] = float(flops) if flops is not None else float(sp.flops(a, classes, images.shape[-1]))
    return out


def _part_scores(model: Any, images: Any, labels: Any, parts: Sequence[Any], seed: int, stats: Any,
                 num_params: float | None, flops: float | None, arch: Any, space: str | None) -> list[float]:
    """Each graph part's score of one model, the statistics of all parts computed once."""
    from autoprox.proxy.graph import DATA_FREE, leaves
    from autoprox.stats.base import ArchStats, StatsConfig
    from autoprox.stats.extract import run_passes
    from autoprox.stats.passes import get_pass, passes_for
    used = set().union(*(leaves(q.expr) for q in parts))
    families = frozenset(used - DATA_FREE)
    wanted = set(passes_for(families))
    for name in wanted:
        if get_pass(name).needs:
            raise ValueError(f"the proxy needs {', '.join(get_pass(name).needs)}: "
                             f"use autoprox.bench with a teacher instead")
    scalars = _arch_scalars(model, images, used, flops, arch, space)
    model = model.to(images.device)
    out = ArchStats(scalars={"num_params": float(num_params if num_params is not None
                                                 else sum(q.numel() for q in model.parameters())), **scalars})
    out.merge(run_passes(model, images, labels.to(images.device), seed, stats or StatsConfig(), wanted, families))
    _check_given(out, families)
    return [q.score(out) for q in parts]


# the module types a statistic is read from, for models that give none of it
_READ_FROM = {"attention": "nn.MultiheadAttention modules, or modules whose class is named AttentionMap "
                           "(an nn.Identity applied to the attention probabilities)",
              "gelu_input": "nn.GELU modules (the gelu function cannot be hooked)",
              "naswot_kernel": "nn.GELU modules (the gelu function cannot be hooked)",
              "swap_patterns": "nn.GELU modules (the gelu function cannot be hooked)",
              "norm_output": "nn.LayerNorm modules", "norm_stable_rank": "nn.LayerNorm modules",
              "block_expressivity": "modules whose class is named Block with a norm2 submodule (pre-norm blocks)",
              "block_trainability": "modules whose class is named Block with a norm2 submodule (pre-norm blocks)",
              "token_entropy": "Linear layers with (batch, tokens, width) outputs",
              "token_min_eig": "Linear layers with (batch, tokens, width) outputs",
              "meco": "Linear layers with (batch, tokens, width) outputs"}


def _check_given(stats: Any, families: frozenset) -> None:
    """One line naming a statistic the model gave nothing of, and where it is read from."""
    for f in sorted(families):
        if not stats.tensors.get(f):
            base = f[:-5] if f.endswith("_grad") and f[:-5] in _READ_FROM else f
            where = _READ_FROM.get(base, "the model's weight layers (Linear, Conv2d, nn.MultiheadAttention)")
            raise ValueError(f"the model gives no {f!r} statistic, which the proxy reads: it is read from {where}")


def bench(space: str, proxies: Sequence[str] = ("params",), targets: Sequence[str] = (),
          bench_file: str | None = None, limit: int | None = None, scoring: Any = None,
          out: str | Path | None = None, backend: str = "serial", workers: int = 2,
          address: str | None = None) -> list[dict]:
    """``autoprox bench``: one row per (proxy, target) and a JCM row per proxy, as in
    ``bench.csv``; with ``out`` the verb's files (bench.csv, scores.csv, config.yaml, scatter.png,
    jcm.png) are written there."""
    from autoprox.eval.bench import BenchConfig, bench_to, run_bench
    from autoprox.stats.provider import ScoringConfig
    cfg = BenchConfig(space=space, bench=bench_file, proxies=tuple(proxies), targets=tuple(targets),
                      limit=limit, scoring=scoring or ScoringConfig())
    if out is None:
        return run_bench(cfg, backend, workers, address)
    return bench_to(Path(out), cfg, backend, workers, address)


def search(out: str | Path | None = None, resume: bool = False, backend: str = "serial", workers: int = 2,
           address: str | None = None, progress: bool = True, **config: Any) -> Any:
    """``autoprox search``: ``config`` are ``autoprox.archsearch.config.SearchConfig`` fields
    (``proxy``, ``space``, ``params=(min, max)`` in millions, ``budget``, ``bench_only``, ...);
    returns the ``SearchResult`` (``.top``: best archs first; ``.history``: every candidate).
    ``progress``: a line on stderr as candidates are scored (every 30 s at least)."""
    from autoprox.core.progress import Progress
    from autoprox.archsearch.config import SearchConfig
    from autoprox.archsearch.report import progress_callback
    from autoprox.archsearch.run import search as run
    if "proxy" not in config or "space" not in config:
        raise ValueError("search needs proxy= and space=")
    cfg = SearchConfig(**config)
    if not progress:
        return run(cfg, out, resume=resume, backend=backend, workers=workers, address=address)
    with Progress(f"search {cfg.space} with {cfg.proxy}") as prog:
        return run(cfg, out, resume=resume, backend=backend, workers=workers, address=address,
                   progress=progress_callback(prog))


def evolve(config: Any, out: str | Path | None = None, resume: bool = False, backend: str = "serial",
           workers: int = 2, address: str | None = None, progress: bool = True, **overrides: Any) -> Any:
    """``autoprox evolve``: ``config`` is a YAML file or an ``EvolveConfig``; ``overrides`` replace
    top-level fields; ``out`` defaults to ``runs/<config file name>``. Returns the finished run
    (``.pick().record``: the picked proxy's expression and JCMs). ``progress``: a line on stderr per
    step (and every 30 s at least), as the CLI prints."""
    from autoprox.core.progress import Progress
    from autoprox.discovery.config import EvolveConfig, load_evolve_config
    from autoprox.discovery.run import evolve as run
    from autoprox.discovery.report import step_note
    cfg = config if isinstance(config, EvolveConfig) else load_evolve_config(config)
    cfg = replace(cfg, **overrides) if overrides else cfg
    if out is None:
        if isinstance(config, EvolveConfig):
            raise ValueError("evolve needs out= when config is not a file")
        out = Path("runs") / Path(config).stem
    if not progress:
        return run(cfg, out, resume, backend, workers, address)
    with Progress("evolve", cfg.steps) as prog:
        return run(cfg, out, resume, backend, workers, address, on_step=lambda row: prog.update(
            row["step"], note=step_note(row, bool(cfg.objective.beyond_size))))
