"""The one command line: ``autoprox <verb>``."""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from typing import Any, NoReturn, Sequence

from autoprox import __version__
from autoprox.cli.flags import SPACE_HELP, SUBSET_HELP, HelpFormatter, add_backend_flags, add_scoring_flags, check_backend_flags
from autoprox.cli.verbs import cmd_bench, cmd_build, cmd_cache, cmd_evolve, cmd_export, cmd_fit, cmd_search, cmd_stats, cmd_zoo
from autoprox.core.errors import AutoproxError
from autoprox.core.memory import return_freed_memory
from autoprox.proxy.export import FORMATS
from autoprox.spaces.declared import is_space_file
from autoprox.stats.passes import list_passes



def _fold(text: str) -> str:
    """``--fold``: a fold number or ``final``."""
    if text != "final" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a fold number or 'final', got {text!r}")
    return text

class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line that points at ``--help`` (the usage itself only on ``--help``)."""

    def error(self, message: str) -> "NoReturn":
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _verb(sub: Any, name: str, help: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A verb's parser: its --help shows a description, choices, defaults and ``examples``."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=epilog,
                          formatter_class=HelpFormatter)


def _add_search_parser(sub: Any) -> None:
    se = _verb(sub, "search", "training-free ViT search with a proxy under params/FLOPs limits",
            ['autoprox search --space autoformer-tiny --proxy zico --params 5-7 --budget 200 --out runs/s-tiny',
             'autoprox search --space autoformer --proxy runs/quick/best.yaml --bench-only --out runs/s-bench'])
    se.add_argument("--proxy", help="zoo name, proxy file or expression (required, or proxy: in --config)")
    se.add_argument("--space", help=SPACE_HELP + " (required, or space: in --config)")
    se.add_argument("--params",
                    help="parameter window in millions, MIN-MAX (e.g. 4-9; '4-' = at least 4; default: none)")
    se.add_argument("--flops", help="FLOPs (multiply-accumulates) window in millions, MIN-MAX (default: none)")
    se.add_argument("--budget", type=int, help="candidates to score (default 1000)")
    se.add_argument("--strategy", choices=("random", "evolution"),
                    help="random (best of N) or evolution (default random)")
    se.add_argument("--top-k", dest="top_k", type=int, help="archs kept in result.yaml (default 5)")
    se.add_argument("--search-seed", dest="search_seed", type=int,
                    help="seed of sampling/evolution and of the --bench-only bootstrap "
                         "(default 0; --seed is the statistics seed)")
    se.add_argument("--chunk", type=int,
                    help="candidates scored between checkpoints (default 32; a multiple of --workers)")
    se.add_argument("--population", type=int, help="evolution: random candidates before evolving (default 32)")
    se.add_argument("--minimize", action="store_true", help="lower proxy score is better")
    se.add_argument("--bench-only", dest="bench_only", action="store_true",
                    help="candidates are the labelled ViT-Bench-101 archs; report true accuracy and regret")
    se.add_argument("--bench", help="benchmark JSON file for --bench-only (default: the shipped one)")
    se.add_argument("--targets", help="--bench-only: comma-separated targets (default c100_kd,flower_kd,chaoyang_kd; imagenet for an OoD-ViT-NAS file)")
    se.add_argument("--config", help="YAML search config (flags override it)")
    se.add_argument("--out", required=True,
                    help="run folder (config.yaml, state.json, history.csv, result.yaml, scores.png)")
    se.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    add_backend_flags(se)
    add_scoring_flags(se)
    se.set_defaults(fn=cmd_search)


def _add_build_parser(sub: Any) -> None:
    bu = _verb(sub, "build",
               "write a found arch as a loadable model (state dict or torch-only file) and its JSON config",
               ["autoprox build runs/s-tiny/result.yaml --rank 1 --out model.py",
                "autoprox build --space pit '{\"base_dim\": 16, \"mlp_ratio\": 2, \"depth\": [1, 6, 6], "
                "\"num_heads\": [2, 2, 2]}' --out pit.pt"])
    bu.add_argument("arch", help="the arch as JSON, or a search's result.yaml")
    bu.add_argument("--space", help=SPACE_HELP + " (default: the result.yaml's)")
    bu.add_argument("--rank", type=int, default=1, help="with a result.yaml: which of its top archs (1 = best)")
    bu.add_argument("--out", required=True, help="model.pt (state dict at the seed) or model.py (torch-only "
                                                 "file whose build() returns the model); model.json is written beside")
    bu.add_argument("--num-classes", dest="num_classes", type=int, default=1000, help="classes of the head")
    bu.add_argument("--img-size", dest="img_size", type=int, default=224, help="image side in pixels")
    bu.add_argument("--seed", type=int, default=0, help="initialisation seed")
    bu.add_argument("--drop-path", dest="drop_path", type=float, default=0.1, help="stochastic depth rate")
    bu.set_defaults(fn=cmd_build)


def _add_evolve_parser(sub: Any) -> None:
    ev = _verb(sub, "evolve", "evolve proxies against a benchmark's accuracies (DEAP, checkpointed; --cv, --transfer, --labels)",
            ['autoprox evolve --config runs/quick.yaml',
             'autoprox evolve --config runs/ood_tiny.yaml --bench tiny.json --cv 5 --backend ray --workers 2'])
    ev.add_argument("--config", required=True, help="YAML evolve config (e.g. runs/quick.yaml)")
    ev.add_argument("--out", help="run folder (default runs/<config name>)")
    ev.add_argument("--resume", action="store_true", help="continue the run in the folder after a kill")
    ev.add_argument("--cv", type=int, metavar="K",
                    help="run the discovery K times, each with one fold held out, report the picks' out-of-fold "
                         "JCM (OUT/cv.md), and pick from a final run without test fold (OUT/best.yaml)")
    ev.add_argument("--transfer", action="store_true",
                    help="leave-one-benchmark-out: for each space of the objective, discover on the others and "
                         "score the pick zero-shot on it beside the alternatives fitted on the same sources "
                         "(OUT/transfer.md, each run in OUT/without-<space>)")
    ev.add_argument("--labels", metavar="K,K,...",
                    help="the label-budget study: leave-one-benchmark-out discovery as --transfer, then for each "
                         "label count K (0: zero-shot) --draws draws of K labelled archs of the benchmark left out, "
                         "discovery and every alternative fitted on the same K and scored on the rest "
                         "(OUT/labels.md, labels.json, labels.png)")
    ev.add_argument("--draws", type=int, default=10, help="with --labels: seeded draws of K labelled archs (default 10)")
    ev.add_argument("--seed-steps", type=int, default=0, metavar="N",
                    help="with --labels: on each draw with K > 0, N more generations of evolution seeded from the "
                         "discovery's candidates, fitness the rule it re-selects by (OUT/seeded-<space>/; "
                         "default 0: none)")
    ev.add_argument("--fold", metavar="I", type=_fold,
                    help="with --cv K: run only fold I (0 to K-1) or the final run, in OUT/fold-I or OUT/final, "
                         "so folds can run in parallel processes or machines; then --cv K --resume gathers them")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key, a dotted path with a YAML value (repeatable): "
                         "--set steps=2 --set objective.limit=20")
    ev.add_argument("--bench", action="append", metavar="[SPACE=]FILE",
                    help="benchmark JSON for a space of the objective instead of the shipped one "
                         "(repeatable; FILE alone only for a single-space objective)")
    add_backend_flags(ev)
    ev.set_defaults(fn=cmd_evolve)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="autoprox", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--version", action="version", version=f"autoprox {__version__}")
    sub = ap.add_subparsers(dest="verb", required=True, parser_class=OneLineParser)
    b = _verb(sub, "bench", "correlate proxies with a benchmark's accuracies (ViT-Bench-101 by default, or --bench FILE)",
            ['autoprox bench --space pit --proxy params snip zico',
             'autoprox bench --space autoformer-tiny --bench tiny.json --proxy zico depth_width --out runs/b-tiny'])
    b.add_argument("--space", help=SPACE_HELP + " (default autoformer)")
    b.add_argument("--bench", help="benchmark JSON file (default: the shipped one)")
    b.add_argument("--proxy", nargs="+", action="extend",
                   help="zoo names, proxy files or expressions (repeatable: --proxy a --proxy b; default params)")
    b.add_argument("--targets", help="comma-separated targets (default c100_kd,flower_kd,chaoyang_kd; imagenet for an OoD-ViT-NAS file)")
    b.add_argument("--jcm", choices=("mean_tau", "mean_abs_tau"), help="joint correlation metric (default mean_tau)")
    b.add_argument("--limit", type=int, help="only the first N archs (default: all)")
    b.add_argument("--subset", type=int, help=SUBSET_HELP)
    b.add_argument("--n-boot", dest="n_boot", type=int, help="bootstrap resamples for intervals (default 1000)")
    b.add_argument("--boot-seed", dest="boot_seed", type=int, help="seed of the bootstrap resamples (default 0)")
    b.add_argument("--config", help="YAML bench config (flags override it)")
    b.add_argument("--out", help="output folder (default runs/bench-<space>)")
    add_backend_flags(b)
    add_scoring_flags(b)
    b.set_defaults(fn=cmd_bench)
    st = _verb(sub, "stats", "compute and cache the statistics of a benchmark's archs",
            ['autoprox stats --space pit --backend ray --workers 2',
             'autoprox stats --space autoformer-small --bench small.json --pass hessian --device cuda'])
    st.add_argument("--space", required=True, help=SPACE_HELP)
    st.add_argument("--bench", help="benchmark JSON file (default: the shipped one)")
    st.add_argument("--limit", type=int, help="only the first N archs (default: all)")
    st.add_argument("--subset", type=int, help=SUBSET_HELP)
    st.add_argument("--pass", dest="passes", action="append", choices=[p for p in list_passes() if p != "base"],
                    help="also run and cache an optional statistics pass (repeatable)")
    st.add_argument("--dry-run", action="store_true",
                    help="print how many archs are cached and how many would be computed, then stop")
    add_backend_flags(st)
    add_scoring_flags(st, skip=("use_cache", "evaluator", "score_memory_mb"))  # stats scores nothing
    st.set_defaults(fn=cmd_stats)
    z = _verb(sub, "zoo", "list every named proxy with its formula and statistics",
            ['autoprox zoo', "autoprox zoo --filter 'evolved_*'"])
    z.add_argument("--filter", help="only names matching this shell pattern, e.g. 'evolved_*' or '*zico*'")
    z.set_defaults(fn=cmd_zoo)
    fi = _verb(sub, "fit", "fit a ranker or an arch surrogate on a few labelled archs, as a proxy file",
            ['autoprox fit --space pit --bench my_20_trained.json --out ranker.yaml',
             'autoprox fit --space autoformer-tiny --bench my_50.json --model zc-surrogate --out zc.yaml'])
    fi.add_argument("--model", default="ranker", metavar="{ranker,surrogate,zc-surrogate,zc-trees}",
                    help="ranker: ridge on the ranks of zoo scores and arch scalars; surrogate: ridge on the "
                         "one-hot encoding of each arch's choices (no statistics); zc-surrogate: both; "
                         "zc-trees: gradient-boosted trees on both (default: ranker)")
    fi.add_argument("--space", required=True, help=SPACE_HELP)
    fi.add_argument("--bench", help="benchmark JSON of your labelled archs (default: the shipped one)")
    fi.add_argument("--targets", help="comma-separated targets (default: the benchmark's default targets)")
    fi.add_argument("--subset", type=int, help=SUBSET_HELP)
    fi.add_argument("--pass", dest="passes", action="append", choices=[p for p in list_passes() if p != "base"],
                    help="statistics passes whose zoo proxies the ranker reads besides base's (repeatable; "
                         "default: features)")
    fi.add_argument("--out", required=True, help="the proxy file to write (YAML)")
    add_backend_flags(fi)
    add_scoring_flags(fi, skip=("evaluator", "score_memory_mb"))
    fi.set_defaults(fn=cmd_fit)
    ex = _verb(sub, "export", "write a proxy as text, LaTeX, YAML or standalone Python",
            ['autoprox export evolved_c100_kd --format latex',
             'autoprox export runs/quick/best.yaml --format python --out proxy.py'])
    ex.add_argument("proxy", help="zoo name or proxy file")
    ex.add_argument("--format", choices=FORMATS, default="text",
                    help="formula (text, LaTeX), proxy file (yaml) or standalone torch file (python)")
    ex.add_argument("--out", help="output file (default: print)")
    ex.set_defaults(fn=cmd_export)
    _add_build_parser(sub)
    _add_evolve_parser(sub)
    _add_search_parser(sub)
    ca = _verb(sub, "cache", "the statistics cache: info, clean temporaries, migrate old entries",
            ['autoprox cache info', 'autoprox cache migrate --space pit'])
    ca.add_argument("action", choices=("info", "clean", "migrate"),
                    help="info: size; clean: remove temporaries of killed writes; migrate: re-key entries "
                         "written by autoprox < 0.2 (torch 2.13.0, for the given statistics settings)")
    ca.add_argument("--space", action="append", help="migrate: only this space (repeatable)")
    add_scoring_flags(ca, skip=("teacher", "gpus_per_worker", "use_cache", "device", "evaluator", "score_memory_mb"))
    ca.set_defaults(fn=cmd_cache)
    return ap


def resume_command(argv: Sequence[str], verb: str) -> str:
    """The command that continues an interrupted ``argv``: the same one, with ``--resume`` for the
    verbs that checkpoint runs (statistics and benches resume from the cache as they are)."""
    words = list(argv)
    if verb in ("evolve", "search") and "--resume" not in words:
        words.append("--resume")
    return "autoprox " + shlex.join(words)


class _OnSigterm:
    """The CLI's SIGTERM handler (``kill``, a scheduler's time limit): it ends a run as Ctrl-C does,
    and ``hit`` tells the two apart (the exception cannot: Ray turns any KeyboardInterrupt raised
    inside ``ray.get`` into a plain one)."""

    def __init__(self) -> None:
        self.hit = False

    def __call__(self, signum: int, frame: object) -> None:
        self.hit = True
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return_freed_memory()
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = _OnSigterm()
    previous = signal.signal(signal.SIGTERM, sigterm) if main_thread else None
    try:
        return _run(args, argv, sigterm)
    finally:
        if main_thread and previous is not None:  # None: a handler not set from Python, left as it was
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, argv: list[str], sigterm: _OnSigterm) -> int:
    try:
        check_backend_flags(args)
        if getattr(args, "space", None) and is_space_file(args.space):  # Ray workers may not share the cwd
            args.space = os.path.abspath(args.space)  # not resolve(): a link loop is the reader's to refuse
        return args.fn(args)
    except KeyboardInterrupt:
        print(f"\nautoprox {args.verb}: {'terminated (SIGTERM)' if sigterm.hit else 'interrupted'}; what was "
              f"finished is kept. Continue with: {resume_command(argv, args.verb)}", file=sys.stderr)
        return 143 if sigterm.hit else 130
    except Exception as e:  # noqa: BLE001 - autoprox's errors, wherever raised, are one line; others propagate
        if not is_reportable(e):
            raise
        print(f"autoprox {args.verb}: error: {one_line(e)}", file=sys.stderr)
        return 2


REPORTED = (AutoproxError, ValueError, KeyError, OSError, RecursionError)  # bad input, files, the disk, Ray


def _from_ray(e: BaseException) -> bool:
    """An exception of Ray's (a worker lost, a task's error wrapped, the object store full)."""
    return any(c.__module__.split(".")[0] == "ray" for c in type(e).__mro__)


def _cause(e: BaseException) -> BaseException:
    """The error a Ray task raised, unwrapped from Ray's wrapper (which prints its whole traceback)."""
    for _ in range(8):
        inner = getattr(e, "cause", None)
        if not (_from_ray(e) and isinstance(inner, BaseException)):
            break
        e = inner
    return e


def is_reportable(e: BaseException) -> bool:
    """Whether the CLI reports ``e`` in one line (exit 2): every autoprox error and the errors of the
    input and the environment, raised in the driver or inside any backend's worker; not a bug's."""
    c = _cause(e)
    return isinstance(c, REPORTED) or _from_ray(c)


def one_line(e: BaseException) -> str:
    """``e``'s message as one line (a Ray task's error as its own message, never a traceback)."""
    e = _cause(e)
    if isinstance(e, KeyError) and e.args:
        msg = str(e.args[0])
    elif isinstance(e, RecursionError):
        msg = "the input is nested too deeply to be read"
    elif isinstance(e, OSError) and not isinstance(e, ValueError) and e.strerror:  # a full disk, a vanished folder
        msg = e.strerror + (f": {e.filename}" if e.filename else "")
    elif _from_ray(e):
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        msg = f"Ray: {type(e).__name__}: {first}"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())

if __name__ == "__main__":
    sys.exit(main())
