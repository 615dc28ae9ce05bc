"""How data-dependent statistics move with batch size and resolution.

For a fixed, seeded subset of AutoFormer benchmark archs, computes a few
data-dependent statistics at several batch configs and reports, per config,
Kendall tau against the same statistic at the paper's 128 x 224 px batch, and
against CIFAR-100 KD accuracy. Every arch's result is saved to a JSON file as it
is computed, so a killed run resumes. ``--threads`` pins torch's threads (run it
with 1 beside other work: two multi-threaded torch processes on 2 cores spin-wait).

    python benchmarks/fidelity.py --archs 20 --threads 1 --out benchmarks/fidelity.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from autoprox.stats.batch import BatchConfig, make_batch
from autoprox.data.benchmark import load_benchmark
from autoprox.core.io import atomic_write_text
from autoprox.spaces import get_space
from autoprox.stats.base import StatsConfig
from autoprox.stats.extract import extract

CONFIGS = [(128, 224), (64, 224), (32, 224), (16, 224), (64, 112), (32, 112), (16, 112), (32, 64)]


def statistics(s) -> dict[str, float]:
    """A few data-dependent statistics of one arch (sums over layers)."""
    return {
        "grad_norm": float(sum(s.get("weight_grad_norm"))),
        "snip": float(sum(s.get("snip_saliency"))),
        "t2g_norm": float(sum(x.norm() for x in s.get("linear_input_grad"))),
        "t4g_absmean": float(np.mean([x.abs().mean() for x in s.get("norm_output_grad")])),
        "naswot": float(torch.linalg.slogdet(s.get("naswot_kernel")[0].double())[1]),
        "loss": s.scalars["loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/fidelity.json")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench, space = load_benchmark("autoformer"), get_space("autoformer")
    idx = np.sort(np.random.default_rng(0).choice(len(bench), args.archs, replace=False))
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    for bs, r in CONFIGS:
        name = f"{bs}x{r}"
        entry = res.setdefault(name, {"seconds": [], "stats": []})
        if len(entry["stats"]) == len(idx):
            continue
        b = make_batch(BatchConfig(size=bs, resolution=r))
        for i in idx[len(entry["stats"]):]:
            t0 = time.perf_counter()
            s = extract(space, bench.archs[i], b.images, b.labels, 100, 0, StatsConfig())
            entry["seconds"].append(time.perf_counter() - t0)
            entry["stats"].append(statistics(s))
            atomic_write_text(out, json.dumps(res, indent=1))
        entry["seconds_per_arch"] = float(np.mean(entry["seconds"]))
        atomic_write_text(out, json.dumps(res, indent=1))
        print(name, f"{entry['seconds_per_arch']:.2f} s/arch", flush=True)
    acc = bench.values("c100_kd", idx)
    ref = res["128x224"]["stats"]
    print("| batch | s/arch | " + " | ".join(f"{k} tau vs 128x224 / vs acc" for k in ref[0]) + " |")
    for name, v in res.items():
        cells = []
        for k in ref[0]:
            x = [row[k] for row in v["stats"]]
            cells.append(f"{kendalltau(x, [row[k] for row in ref]).statistic:.2f} / "
                         f"{kendalltau(x, acc).statistic:.2f}")
        print(f"| {name} | {v['seconds_per_arch']:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
