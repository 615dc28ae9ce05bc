"""What an evolution run leaves in ``runs/<name>/``: hall of fame, best proxy, progress, plots.

- ``hall_of_fame.yaml``: the best proxies by train JCM, each with its validation and test JCM;
- ``best.yaml``: the hall-of-fame member with the best validation JCM, oriented (negated when
  its train correlation is negative) so ``autoprox bench --proxy best.yaml`` reproduces it;
- ``progress.csv``: one row per step; ``jcm.png``: best/mean train JCM and the pick's
  validation JCM over time; ``best_vs_accuracy.png``: the pick's score against accuracy.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from .export import formula, to_yaml
from .graph import DATA_FREE, GraphProxy, leaves, make, parse
from .io import atomic_write_bytes, atomic_write_text

PROGRESS_COLUMNS = ("step", "evals", "unique", "best_train", "mean_train", "pick_val", "evals_per_s")


def oriented(record: dict, name: str, description: str = "") -> GraphProxy:
    """The proxy of a history record, negated when its JCM orientation is negative."""
    e = parse(record["expression"])
    return GraphProxy(name, make("negate", e) if record["sign"] < 0 else e, description)


def _figures(r: dict) -> dict:
    keep = ("hash", "expression", "sign", "train", "val", "test", "per_space", "step")
    return {k: r[k] for k in keep if k in r} | {"formula": formula(parse(r["expression"]))}


def write_outputs(run: Any) -> None:
    """Hall of fame, best proxy, progress table and plots of a finished (or stopped) run."""
    out: Path = run.out
    hof = [_figures(i.record) for i in run.hof]
    atomic_write_text(out / "hall_of_fame.yaml", yaml.safe_dump(hof, sort_keys=False, width=120))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PROGRESS_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(run.progress_rows)
    atomic_write_text(out / "progress.csv", buf.getvalue())
    pick = run.pick()
    if pick is None:
        return
    r = pick.record
    desc = (f"evolved by autoprox ({run.cfg.mode}, {'+'.join(run.cfg.objective.spaces)}): "
            f"JCM train {r['train']:.3f}, val {r['val']:.3f}"
            + (f", test {r['test']:.3f}" if r.get("test") is not None else ""))
    best = oriented(r, out.name, desc)
    atomic_write_text(out / "best.yaml", to_yaml(best))
    plot_progress(run.progress_rows, out / "jcm.png")
    scores = run.obj.scores([str(best.expr)])
    plot_scores(run.obj, {s: m[0] for s, m in scores.items()}, out / "best_vs_accuracy.png", best.name)
    atomic_write_text(out / "summary.md", summary_table(run, r))


def summary_table(run: Any, pick: dict) -> str:
    """Markdown: the pick against every zoo proxy the run's statistics can score, per fold."""
    from .zoo import get_proxy, list_proxies
    usable = set(run.obj.families) | DATA_FREE
    names, exprs = [], []
    for n in list_proxies():
        p = get_proxy(n)
        if isinstance(p, GraphProxy) and leaves(p.expr) <= usable:
            names.append(n)
            exprs.append(str(p.expr))
    rows = [("**pick** " + run.out.name, pick)] + list(zip(names, run.obj.evaluate(exprs)))
    rows[1:] = sorted(rows[1:], key=lambda t: -(t[1]["val"] if t[1]["val"] is not None else -9))
    spaces = "+".join(run.cfg.objective.spaces)
    lines = [f"JCM ({run.cfg.objective.jcm}, targets {', '.join(run.cfg.objective.targets)}) on {spaces}; "
             f"folds: " + ", ".join(f"{k} {len(v)}" for k, v in run.obj.spaces[0].folds.items()) + " archs.",
             "", "| proxy | train | val | test |", "|---|---|---|---|"]
    fmt = (lambda v: "-" if v is None else f"{v:.3f}")
    for n, r in rows:
        lines.append(f"| {n} | {fmt(r['train'])} | {fmt(r['val'])} | {fmt(r['test'])} |")
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_progress(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["best_train"] for r in rows], label="best train JCM")
    ax.plot(steps, [r["mean_train"] for r in rows], label="mean train JCM (valid)")
    ax.plot(steps, [r["pick_val"] if r["pick_val"] is not None else float("nan") for r in rows],
            label="pick's validation JCM")
    ax.set_xlabel("step")
    ax.set_ylabel("JCM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_scores(obj: Any, scores: dict, path: Path, title: str) -> None:
    """One panel per (space, target): score vs accuracy, coloured by fold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(sd, t) for sd in obj.spaces for t in sd.targets]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), squeeze=False)
    for ax, (sd, t) in zip(axes[0], panels):
        for fold, idx in sd.folds.items():
            if len(idx):
                ax.scatter(scores[sd.name][idx], sd.targets[t][idx], s=10, label=fold)
        ax.set_title(f"{sd.name} {t}", fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)


def live_display(total: int) -> tuple[Callable[[dict], None], Callable[[], None]]:
    """(update, stop) of a rich progress bar: step, evaluations per second, best JCM."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    prog = Progress(TextColumn("evolve"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), disable=not sys.stderr.isatty())
    task = prog.add_task("evolve", total=total, info="")
    prog.start()

    def update(row: dict) -> None:
        val = "-" if row["pick_val"] is None else f"{row['pick_val']:.3f}"
        info = (f"evals {row['evals']} ({row['evals_per_s']:.1f}/s)  best train {row['best_train']:.3f}"
                f"  pick val {val}")
        prog.update(task, completed=row["step"], info=info)
        if not sys.stderr.isatty():
            print(f"step {row['step']}/{total}  {info}", file=sys.stderr, flush=True)
    return update, prog.stop
