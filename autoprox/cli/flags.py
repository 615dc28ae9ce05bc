"""Command-line flags shared by the verbs, and how they overlay a config."""
from __future__ import annotations

import argparse
from typing import Any, Sequence

import yaml

from autoprox.core.config import load_yaml_text
from autoprox.parallel.session import CONNECT_TIMEOUT
from autoprox.spaces import list_spaces

SPACE_HELP = "search space: " + ", ".join(list_spaces()) + ", or a YAML file declaring one (README)"
SUBSET_HELP = ("only the file's pre-registered N archs: the N whose sha256 of '<space>/<record id>' "
               "is lowest, fixed before any score is seen (default: all)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every ``--help`` shows choices and argparse defaults; a flag whose default is ``None`` (its
    value then comes from the config file or the config's own default, named in its help), an
    on/off switch or a help naming its default already shows none. Descriptions and examples
    (the epilog) keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool) or action.default is argparse.SUPPRESS \
                or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

SCORING_FLAGS = {  # flag -> (path in ScoringConfig, type, help)
    "batch_source": (("batch", "source"), str, "synthetic (default, offline), cifar100 or folder"),
    "batch_path": (("batch", "path"), str, "CIFAR-100 'train' file/folder, or image folder"),
    "batch_size": (("batch", "size"), int, "images in the proxy batch (default 32)"),
    "resolution": (("batch", "resolution"), int, "image side in pixels (default 224)"),
    "num_classes": (("batch", "num_classes"), int, "classes of the model head and labels (default 100)"),
    "seed": (("seed",), int, "statistics seed: model init and stochastic layers (default 0)"),
    "device": (("device",), str, "cpu (default) or cuda[:N]"),
    "cache_dir": (("cache_dir",), str, "statistics cache folder (default $AUTOPROX_CACHE or ~/.cache/autoprox)"),
    "stats_dtype": (("stats", "dtype"), str, "float16 (default) or float32 cache storage"),
    "teacher": (("teacher",), str, "ConvNet teacher for tvt: TorchScript file or torch.save(model) pickle"),
    "gpus_per_worker": (("gpus_per_worker",), float,
                        "Ray: GPUs each worker asks for; fractions share a GPU, e.g. 0.5 (default 1 with cuda)"),
    "evaluator": (("evaluator",), str, "batched (default: a population over many archs per op, on --device) "
                                       "or reference (per layer and arch; the slow check)"),
    "score_memory_mb": (("score_memory_mb",), int, "MiB of statistics each worker keeps packed for scoring "
                                                   "(default 1024 on CPU; on cuda half the GPU times --gpus-per-worker)"),
}


def add_scoring_flags(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """The statistics flags but those in ``skip``, which do not apply to the verb (``use_cache`` is
    ``--no-cache``)."""
    g = p.add_argument_group("statistics (override the config file)")
    for flag, (_, tp, help_) in SCORING_FLAGS.items():
        if flag not in skip:
            g.add_argument("--" + flag.replace("_", "-"), dest=flag, type=tp, default=None, help=help_)
    if "use_cache" not in skip:
        g.add_argument("--no-cache", dest="use_cache", action="store_false", default=None,
                       help="compute statistics without reading or writing the cache")


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("parallelism")
    g.add_argument("--backend", choices=("serial", "ray"), default="serial",
                   help="serial (in-process) or ray (actors own shards of archs)")
    g.add_argument("--workers", type=int, default=2, help="Ray actors, one CPU each")
    g.add_argument("--address", help="join an existing Ray cluster (HOST:PORT or auto) instead of starting one")
    g.add_argument("--connect-timeout", dest="connect_timeout", type=float, default=CONNECT_TIMEOUT,
                   help="seconds to wait for the cluster at --address before giving up")


def check_backend_flags(args: argparse.Namespace) -> None:
    """One-line errors for parallelism flags out of range, before any work."""
    from autoprox.parallel.session import check_workers
    if hasattr(args, "workers"):
        check_workers(args.workers)
    t = getattr(args, "connect_timeout", 1.0)
    if not t > 0 or t == float("inf"):
        raise ValueError(f"--connect-timeout must be > 0 seconds, got {t}")


def overlay(base: dict, args: argparse.Namespace, top: dict[str, Any]) -> dict:
    """Apply explicitly given flags onto a plain config dict."""
    sc = base.setdefault("scoring", {})
    for flag, (path, _, _) in SCORING_FLAGS.items():
        v = getattr(args, flag, None)
        if v is not None:
            d = sc
            for k in path[:-1]:
                d = d.setdefault(k, {})
            d[path[-1]] = v
    if getattr(args, "use_cache", None) is False:
        sc["use_cache"] = False
    base.update({k: v for k, v in top.items() if v is not None})
    return base


def apply_sets(data: dict, items: Sequence[str]) -> dict:
    """``--set KEY=VALUE`` overrides on a plain config dict: ``KEY`` a dotted path
    (``objective.limit``), ``VALUE`` a YAML scalar or flow collection (``20``, ``true``,
    ``[pit]``). Unknown keys are left for the config loader to reject."""
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set objective.limit=20")
        try:
            value = load_yaml_text(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: not a YAML value: {str(e).splitlines()[0]}") from None
        parts = key.strip().split(".")
        d = data
        for i, k in enumerate(parts[:-1]):
            d = d.setdefault(k, {})
            if not isinstance(d, dict):
                raise ValueError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is a value, not a section")
        d[parts[-1]] = value
    return data


def bench_files(items: Sequence[str], spaces: Sequence[str]) -> dict[str, str]:
    """``--bench SPACE=FILE`` (repeatable), or ``--bench FILE`` when there is a single space."""
    out: dict[str, str] = {}
    for item in items:
        space, sep, path = item.partition("=")
        if sep and space in list_spaces():
            out[space] = path
        elif len(spaces) == 1:
            out[spaces[0]] = item
        else:
            raise ValueError(f"--bench {item}: the objective has spaces {list(spaces)}; "
                             f"give --bench SPACE=FILE for each space to replace")
    return out
