"""Soak: a long evolution under chaos ends as an unbroken one, with flat memory and descriptors.

    python benchmarks/soak.py --out runs/soak --spaces autoformer pit --archs 100 --steps 40 \\
        --population 24 --worker-kill-every 180 --driver-kills 2 --bench-procs 6

1. Reference: ``autoprox evolve`` on two Ray workers, unbroken (timed: ``t_ref``; usage sampled too).
2. Chaos: the same config and seed in another folder. A random Ray worker of this run (a descendant
   of its driver, never another process's) is killed with SIGKILL every ``--worker-kill-every``
   seconds (+-50%, seeded); the driver itself is killed ``--driver-kills`` times, spread over
   ``t_ref``, and resumed with ``--resume``. Every ``--sample-every`` seconds the resident memory
   and open descriptors of the driver and of each worker are sampled (``samples.csv``).
3. The chaos run's outputs are compared with the reference's byte for byte (the checkpoint without
   its wall-clock figures).
4. ``--bench-procs`` ``autoprox bench`` processes share one cold statistics cache at once; each
   one's scores are compared with those of a lone run on a cache of its own.

Everything lands in ``--out`` (``soak.json``: the figures; ``samples.csv``; the runs' folders and
logs). Linux only (/proc). A short check: ``--archs 20 --steps 3 --population 8
--worker-kill-every 20 --bench-procs 4 --bench-archs 6``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

EVO_FILES = ("config.yaml", "history.jsonl", "hall_of_fame.yaml", "best.yaml", "summary.md")
ENV = os.environ | {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def evolve_config(args: argparse.Namespace) -> dict:
    """An evolution over ``--archs`` archs of each space, reading cheap statistics only."""
    scoring = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    return {"seed": args.seed, "population": args.population, "steps": args.steps,
            "offspring": args.population, "hall_of_fame": 5, "seed_proxies": ["params", "snip"],
            "objective": {"spaces": list(args.spaces), "limit": args.archs, "scoring": scoring},
            "variation": {"leaves": ["weight", "weight_grad", "linear_input", "linear_input_grad"],
                          "single_leaves": ["num_params", "depth", "width"], "max_parts": 1}}


# ---------------------------------------------------------------------------------- processes
def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, command line, start time in clock ticks) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        out[int(d)] = (int(fields[1]), cmd, int(fields[19]))
    return out


def descendants(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (command line, start time) of every process below ``root`` (Ray's raylet and workers)."""
    table, found, todo = _proc_table(), {}, [root]
    while todo:
        p = todo.pop()
        for pid, (ppid, cmd, start) in table.items():
            if ppid == p and pid not in found:
                found[pid] = (cmd, start)
                todo.append(pid)
    return found


def usage(pid: int) -> tuple[float, int] | None:
    """(resident MiB, open descriptors) of ``pid``; None once it is gone."""
    try:
        rss = next(int(ln.split()[1]) for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if ln.startswith("VmRSS:"))
        return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None


def workers_of(below: dict[int, tuple[str, int]]) -> dict[int, tuple[str, int]]:
    return {p: v for p, v in below.items() if v[0].startswith("ray::ScoringWorker")}


def kill_own(procs: dict[int, tuple[str, int]]) -> None:
    """SIGKILL the processes in ``procs`` (started by this script, directly or through Ray) that are still
    alive: each only while its pid still names the same process (same start time), never a reused pid."""
    table = _proc_table()
    for pid, (_, start) in procs.items():
        if pid in table and table[pid][2] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------------------------- the runs
def evolve_cmd(cfg: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "autoprox.cli.main", "evolve", "--config", str(cfg), "--out", str(out),
            "--backend", "ray", "--workers", "2", *(["--resume"] if resume else [])]


class Chaos:
    """A run of the driver, usage sampled; with ``t_ref`` (the chaos run) workers and the driver are
    killed on schedule and the driver resumed; without, it is the unbroken reference."""

    def __init__(self, args: argparse.Namespace, cfg: Path, out: Path, t_ref: float | None = None) -> None:
        self.args, self.cfg, self.out = args, cfg, out
        self.rng = random.Random(args.seed)
        self.chaos = t_ref is not None
        kills = args.driver_kills if self.chaos else 0
        self.driver_at = [t_ref * (i + 1) / (kills + 1) for i in range(kills)]
        self.samples: list[dict] = []
        self.worker_kills = self.driver_kills = self.restarts = 0
        self.seen: dict[int, tuple[str, int]] = {}
        self.t0 = time.monotonic()

    def _next_worker_kill(self, now: float) -> float:
        return now + self.args.worker_kill_every * self.rng.uniform(0.5, 1.5)

    def run(self) -> float:
        """Drive the run to its end; its wall seconds (restarts included)."""
        resume = False
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out.parent / "run.log", "w") as log:
            while True:
                proc = subprocess.Popen(evolve_cmd(self.cfg, self.out, resume), stdout=log,
                                        stderr=subprocess.STDOUT, env=ENV)
                code = self._watch(proc)
                time.sleep(2)
                kill_own(self.seen)  # what Ray left of a killed driver (its fate sharing does it too)
                if code == 0:
                    return time.monotonic() - self.t0
                if code != -signal.SIGKILL:
                    raise SystemExit(f"the run in {self.out} failed with exit {code}; see {log.name}")
                resume, self.restarts = True, self.restarts + 1

    def _watch(self, proc: subprocess.Popen) -> int:
        next_kill = self._next_worker_kill(time.monotonic())
        while proc.poll() is None:
            now = time.monotonic()
            below = descendants(proc.pid)
            self.seen.update(below)
            workers = workers_of(below)
            self._sample(now - self.t0, proc.pid, workers)
            if self.driver_at and now - self.t0 >= self.driver_at[0]:
                self.driver_at.pop(0)
                proc.kill()
                self.driver_kills += 1
            elif self.chaos and now >= next_kill and workers:
                pid = self.rng.choice(sorted(workers))
                kill_own({pid: workers[pid]})
                self.worker_kills += 1
                next_kill = self._next_worker_kill(now)
            time.sleep(self.args.sample_every)
        return proc.wait()

    def _sample(self, t: float, driver: int, workers: dict) -> None:
        for pid, role in [(driver, "driver"), *((w, "worker") for w in sorted(workers))]:
            u = usage(pid)
            if u is not None:
                self.samples.append({"t": round(t, 1), "role": role, "pid": pid, "rss_mib": round(u[0], 1),
                                     "fds": u[1], "restart": self.restarts})


def evo_outputs(d: Path) -> dict:
    ck = json.loads((d / "checkpoint.json").read_text())
    for k in ("elapsed", "progress"):
        ck.pop(k, None)
    return {"checkpoint.json": json.dumps(ck, sort_keys=True).encode(),
            **{n: (d / n).read_bytes() for n in EVO_FILES}}


# ---------------------------------------------------------------------------------- figures
def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) per hour; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt, my = sum(t for t, _ in points) / n, sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 3600 * sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


def curve(samples: list[dict], role: str) -> dict:
    """First, last, max and slope of the largest ``role`` process at each sample time, for memory
    and descriptors, over the last driver's life (a restarted driver starts afresh)."""
    rows = [s for s in samples if s["role"] == role and s["restart"] == samples[-1]["restart"]]
    if not rows:
        return {}
    by_t: dict[float, list[dict]] = {}
    for s in rows:
        by_t.setdefault(s["t"], []).append(s)
    pts = sorted((t, max(r["rss_mib"] for r in rs), max(r["fds"] for r in rs)) for t, rs in by_t.items())
    half = pts[len(pts) // 2:]  # the second half: past start-up and loading
    return {"samples": len(pts), "rss_mib_first": pts[0][1], "rss_mib_last": pts[-1][1],
            "rss_mib_max": max(p[1] for p in pts), "fds_first": pts[0][2], "fds_last": pts[-1][2],
            "fds_max": max(p[2] for p in pts),
            "rss_mib_per_hour_second_half": round(_slope([(t, r) for t, r, _ in half]), 1),
            "fds_per_hour_second_half": round(_slope([(t, f) for t, _, f in half]), 1)}


def plot(samples: list[dict], path: Path) -> None:
    """``soak.png``: resident memory and open descriptors of the driver and the largest worker over
    time, the unbroken run beside the chaos run (dotted lines: the driver's restarts)."""
    from autoprox.eval.plots import figure, png_bytes
    fig = figure(10, 6)
    axes = fig.subplots(2, 2, sharex="col", sharey="row")
    for col, run in enumerate(("ref", "chaos")):
        rows = [s for s in samples if s["run"] == run]
        for role, colour in (("driver", "C0"), ("worker", "C1")):
            by_t: dict[float, list[dict]] = {}
            for s in rows:
                if s["role"] == role:
                    by_t.setdefault(float(s["t"]), []).append(s)
            ts = sorted(by_t)
            for row, key in enumerate(("rss_mib", "fds")):
                axes[row][col].plot([t / 60 for t in ts], [max(float(s[key]) for s in by_t[t]) for t in ts],
                                    colour, label=role, lw=1)
        starts: dict[int, float] = {}  # each resumed driver's first sample
        for s in rows:
            if s["role"] == "driver" and int(s["restart"]):
                starts[int(s["restart"])] = min(float(s["t"]), starts.get(int(s["restart"]), float("inf")))
        for t in starts.values():
            for row in (0, 1):
                axes[row][col].axvline(t / 60, color="grey", ls=":", lw=1)
        axes[0][col].set_title("unbroken run" if run == "ref" else "worker and driver kills")
        axes[1][col].set_xlabel("minutes")
    for row in axes:
        row[0].set_ylim(bottom=0)  # flat against the process's size; the slopes are in soak.json
    axes[0][0].set_ylabel("resident memory (MiB)")
    axes[1][0].set_ylabel("open descriptors")
    axes[0][0].legend()
    path.write_bytes(png_bytes(fig))


# ---------------------------------------------------------------------------------- shared cache
def bench_cmd(args: argparse.Namespace, cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "autoprox.cli.main", "bench", "--space", args.spaces[0], "--proxy", "snip",
            "grad_norm", "--limit", str(args.bench_archs), "--batch-size", str(args.bench_batch),
            "--resolution", str(args.bench_resolution), "--n-boot", "50", "--cache-dir", str(cache),
            "--out", str(out)]


def scores_of(out: Path) -> list[dict]:
    with open(out / "scores.csv") as f:
        return [{k: v for k, v in r.items() if k.startswith("score_")} for r in csv.DictReader(f)]


def shared_cache(args: argparse.Namespace, root: Path) -> dict:
    """A lone bench on its own cold cache, then ``--bench-procs`` at once on one shared cold cache."""
    t0 = time.monotonic()
    subprocess.run(bench_cmd(args, root / "cache-lone", root / "bench-lone"), env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lone_s, want = time.monotonic() - t0, scores_of(root / "bench-lone")
    t0 = time.monotonic()
    procs = [subprocess.Popen(bench_cmd(args, root / "cache-shared", root / f"bench-{i}"), env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(args.bench_procs)]
    errors = [p.communicate()[1] for p in procs]
    codes = [p.returncode for p in procs]
    same = [c == 0 and scores_of(root / f"bench-{i}") == want for i, c in enumerate(codes)]
    return {"procs": args.bench_procs, "archs": args.bench_archs, "lone_s": round(lone_s, 1),
            "shared_s": round(time.monotonic() - t0, 1), "exit_codes": codes, "same_scores_as_lone": same,
            "errors": [e.strip().splitlines()[-1] if c and e.strip() else "" for e, c in zip(errors, codes)],
            "entries": len(list((root / "cache-shared").rglob("*.apx")))}


# ---------------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder of the soak's runs and figures (made afresh)")
    ap.add_argument("--spaces", nargs="+", default=["autoformer", "pit"], help="spaces of the objective")
    ap.add_argument("--archs", type=int, default=100, help="archs of each space (objective.limit)")
    ap.add_argument("--steps", type=int, default=40, help="generations: sets the run's length")
    ap.add_argument("--population", type=int, default=24, help="population and offspring per generation")
    ap.add_argument("--seed", type=int, default=0, help="the runs' seed and the kill schedule's")
    ap.add_argument("--cache-dir", help="statistics cache of the evolutions (default: autoprox's)")
    ap.add_argument("--worker-kill-every", type=float, default=180.0, help="mean seconds between worker kills")
    ap.add_argument("--driver-kills", type=int, default=2, help="times the driver is killed and resumed")
    ap.add_argument("--sample-every", type=float, default=2.0, help="seconds between usage samples")
    ap.add_argument("--bench-procs", type=int, default=6, help="bench processes sharing one cache (0: skip)")
    ap.add_argument("--bench-archs", type=int, default=12, help="archs each bench scores")
    ap.add_argument("--bench-batch", type=int, default=8, help="images of the benches' proxy batch")
    ap.add_argument("--bench-resolution", type=int, default=64, help="the benches' image side")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    root = Path(args.out)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: the soak writes a fresh folder")
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "soak.yaml"
    cfg.write_text(yaml.safe_dump(evolve_config(args), sort_keys=False))
    ref = Chaos(args, cfg, root / "ref" / "run")  # both folders named alike: reports name them
    t_ref = ref.run()
    print(f"reference: {t_ref:.0f} s", flush=True)
    chaos = Chaos(args, cfg, root / "chaos" / "run", t_ref)
    t_chaos = chaos.run()
    want, got = evo_outputs(root / "ref" / "run"), evo_outputs(root / "chaos" / "run")
    report = {"spaces": args.spaces, "archs": args.archs * len(args.spaces), "steps": args.steps,
              "population": args.population, "reference_s": round(t_ref, 1), "chaos_s": round(t_chaos, 1),
              "worker_kills": chaos.worker_kills, "driver_kills": chaos.driver_kills, "restarts": chaos.restarts,
              "identical": want == got, "differing": sorted(k for k in want if want[k] != got.get(k)),
              "reference_driver": curve(ref.samples, "driver"), "reference_worker": curve(ref.samples, "worker"),
              "driver": curve(chaos.samples, "driver"), "worker": curve(chaos.samples, "worker")}
    with open(root / "samples.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "t", "role", "pid", "rss_mib", "fds", "restart"])
        w.writeheader()
        w.writerows([{"run": name, **s} for name, r in (("ref", ref), ("chaos", chaos)) for s in r.samples])
    with open(root / "samples.csv") as f:
        plot(list(csv.DictReader(f)), root / "soak.png")
    if args.bench_procs:
        report["shared_cache"] = shared_cache(args, root)
    (root / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    ok = report["identical"] and all(report.get("shared_cache", {}).get("same_scores_as_lone", [True]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
