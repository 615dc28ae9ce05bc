"""Fill the statistics cache step by step from a plan, resuming where the last run stopped.

    python benchmarks/fill.py --shared ../shared [--plan benchmarks/fill_plan.yaml] [--log fill.log]

Each step of the plan is one ``autoprox stats`` run (its own process, two Ray workers by default);
a finished step is recorded in ``fill-done.txt`` in the cache folder, so a restart skips it at once
and a step cut off mid-way goes on from the archs already cached. The log (and the terminal) get each
step's command, autoprox's progress lines, the measured seconds per arch computed, and the estimate of
what remains (the archs each step has still to compute, ``autoprox stats --dry-run``), at the plan's
rates (an idle machine) and at the pace of the step just done. SIGTERM or Ctrl-C stops the running step as ``autoprox stats`` does (what was finished is kept).
"""
from __future__ import annotations

import argparse
import io
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import yaml

from autoprox.cli.main import main as autoprox_main
from autoprox.stats.cache import default_cache_dir

DONE = "fill-done.txt"


def step_key(step: dict) -> str:
    """A step's identity: what it computes, not its estimate."""
    return " ".join(f"{k}={step[k]}" for k in sorted(step) if k != "est_s")


def command(step: dict, shared: Path, workers: int, cache: Path) -> list[str]:
    cmd = ["autoprox", "stats", "--space", step["space"], "--backend", "ray", "--workers", str(workers),
           "--cache-dir", str(cache)]
    if step.get("file"):
        cmd += ["--bench", str(shared / "ood-vit-nas" / step["file"])]
    if step.get("subset"):
        cmd += ["--subset", str(step["subset"])]
    if step.get("batch_size"):
        cmd += ["--batch-size", str(step["batch_size"])]
    for p in step.get("passes", ()):
        cmd += ["--pass", p]
    return cmd


def to_compute(cmd: list[str]) -> tuple[int, int]:
    """(archs, archs still to compute) of a step's command, from its ``--dry-run``."""
    out = io.StringIO()
    with redirect_stdout(out):
        rc = autoprox_main([*cmd[1:], "--dry-run"])
    got = re.search(r"statistics of (\d+) archs .*, (\d+) to compute", out.getvalue())
    if rc != 0 or not got:
        raise SystemExit(f"{' '.join(cmd)} --dry-run failed (exit {rc})")
    return int(got.group(1)), int(got.group(2))


def hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Log:
    def __init__(self, path: Path):
        self.f = path.open("a", buffering=1)

    def __call__(self, line: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line.rstrip()}"
        print(line, flush=True)
        self.f.write(line + "\n")


def run_step(cmd: list[str], log: Log) -> int:
    """``cmd`` with its output copied into the log; SIGTERM is passed on to it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    old = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        for line in proc.stdout:
            if "WARNING" not in line and "INFO" not in line:
                log(line)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, old)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", required=True, help="folder holding ood-vit-nas/{tiny,small,base}.json")
    ap.add_argument("--plan", default=str(Path(__file__).with_name("fill_plan.yaml")))
    ap.add_argument("--log", default="fill.log")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache-dir", help="statistics cache (default $AUTOPROX_CACHE or ~/.cache/autoprox)")
    args = ap.parse_args()
    shared, log = Path(args.shared), Log(Path(args.log))
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    steps = yaml.safe_load(Path(args.plan).read_text())["steps"]
    done_file = cache / DONE
    done = set(done_file.read_text().splitlines()) if done_file.exists() else set()
    cmds = [(s, command(s, shared, args.workers, cache)) for s in steps if step_key(s) not in done]
    pending = [(s, cmd, *to_compute(cmd)) for s, cmd in cmds]  # (step, command, archs, to compute)
    log(f"fill: {len(steps) - len(pending)} of {len(steps)} steps done; estimate for the rest "
        f"{hms(sum(s['est_s'] * m for s, _, _, m in pending))}")
    for i, (step, cmd, n, m) in enumerate(pending):
        log(f"step {step_key(step)} ({n} archs, {m} to compute): {' '.join(cmd)}")
        t0 = time.perf_counter()
        rc = run_step(cmd, log)
        dt = time.perf_counter() - t0
        if rc != 0:
            log(f"step stopped with exit {rc} after {hms(dt)}; run the same command again to go on")
            return rc
        with done_file.open("a") as f:
            f.write(step_key(step) + "\n")
        rest = sum(s["est_s"] * k for s, _, _, k in pending[i + 1:])
        each = dt / max(m, 1)
        pace = each / step["est_s"]
        log(f"step done in {hms(dt)} ({each:.2f} s/arch computed, estimate was {step['est_s']}); "
            f"{len(pending) - i - 1} steps left, estimate {hms(rest)} at the plan's rates, "
            f"{hms(rest * pace)} at this step's pace ({pace:.2f}x)")
    log("fill: every step done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
