"""OoD-ViT-NAS files against autoprox's AutoFormer supernet spaces.

- every record's builder parameter count (1,000 classes, 224 px) against the file's ``params``;
- the data-free baselines' Kendall tau vs ImageNet top-1 (``imagenet``), with 95% bootstrap
  intervals: #params, FLOPs (autoprox's MAC count and the file's own ``flops``), depth, width
  and log(depth x width), beside the figures computed over the full 1,001-arch files.

    python benchmarks/ood_vit_nas.py DIR   # DIR holds {tiny,small,base}.json or the repository's
                                           # 1k_Vit_Architecture_from_AutoFM_{tiny,small,base}.json
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from autoprox.data.benchmark import load_archs
from autoprox.eval.uncertainty import kendall_ci
from autoprox.spaces import get_space

FULL = {  # Kendall tau vs clean over all 1,001 archs of each file (measured on the full files)
    "tiny": {"params": 0.469, "file_flops": 0.512, "depth": 0.641, "depth_width": 0.542},
    "small": {"params": 0.789, "depth_width": 0.816},
    "base": {"params": 0.124, "depth": -0.328, "width": 0.336},
}


def baselines(space: str, archs: list[dict], flops_file: list[float]) -> dict[str, np.ndarray]:
    sp = get_space(space)
    sc = [sp.arch_scalars(a) for a in archs]
    return {"params": np.array([sp.num_params(a, 1000) for a in archs], float),
            "flops": np.array([sp.flops(a, 1000) for a in archs], float),
            "file_flops": np.array(flops_file, float),
            "depth": np.array([s["depth"] for s in sc]), "width": np.array([s["width"] for s in sc]),
            "depth_width": np.array([math.log(s["depth"] * s["width"]) for s in sc])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="folder with OoD-ViT-NAS's files (tiny.json or 1k_Vit_Architecture_from_AutoFM_tiny.json, ...)")
    args = ap.parse_args()
    print("| file | archs | params equal | baseline | tau [95% CI] | full file |")
    print("|---|---|---|---|---|---|")
    for name in ("tiny", "small", "base"):
        path = next((p for p in (Path(args.folder) / f"{name}.json",
                                 Path(args.folder) / f"1k_Vit_Architecture_from_AutoFM_{name}.json") if p.is_file()), None)
        if path is None:
            ap.error(f"{args.folder} has neither {name}.json nor 1k_Vit_Architecture_from_AutoFM_{name}.json")
        space = f"autoformer-{name}"
        b, archs, _ = load_archs(space, str(path))  # raises at the first record whose count differs
        flops_file = [r["flops"] for r in json.loads(path.read_text()).values()]
        acc = b.values("imagenet")
        for i, (base, x) in enumerate(baselines(space, archs, flops_file).items()):
            ci = kendall_ci(x, acc)
            full = FULL[name].get(base)
            lead = f"| {name} | {len(archs)} | {len(archs)}/{len(archs)} " if i == 0 else "| | | "
            print(f"{lead}| {base} | {ci.estimate:.3f} [{ci.lo:.3f}, {ci.hi:.3f}] | "
                  f"{'' if full is None else f'{full:.3f}'} |")


if __name__ == "__main__":
    main()
