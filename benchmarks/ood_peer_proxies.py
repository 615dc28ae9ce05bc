"""Proxies as the OoD-ViT-NAS repository computes them, on autoprox's AutoFormer supernet builders.

The repository's proxy script (``compute_9_trainning_frees_for_Vit_OoD.py`` with
``lib/training_free/``) is a peer to compare the zoo against, as ``tests/zoo_reference.py`` is for
the zoo's own definitions. Its choices, written here in plain torch (nothing of its code is copied):

- every subnet is a slice of one supernet at initialisation, in eval mode (DropPath off), 1,000
  classes, a batch of 64 ImageNet training images (here: the synthetic batch, 64 images, 1,000
  classes, or ``--batch-path`` images);
- ``dss``: SynFlow's pass (|W| everywhere, an all-ones image, sum of logits); qkv and projection:
  ||dW||_nuc x ||W||_nuc; fc1, fc2: sum |dW * W|; the head counted twice (it matches both of the
  script's layer tests); the patch embedding left out;
- ``autoproxa`` (the script's "AutoProxA"): the same pass; qkv and projection: sum |dW|; fc1, fc2
  and (twice) the head: mean sigmoid(dW);
- ``snip``: sum |dL/dW * W| over every linear layer (the patch embedding falls out), the batch in 10
  chunks whose gradients add up;
- ``naswot``: every linear and conv weight re-drawn N(0, 1), biases 0, a Gaussian batch of 64,
  K = sum over GELU inputs of c c^T + (1 - c)(1 - c)^T with c the sign codes; log|K|. (AutoFormer's
  encoder layer calls a ``gelu`` function, so the file's ``nn.GELU`` hooks would see nothing there;
  autoprox's blocks have ``nn.GELU`` modules.) ``naswot_gauss`` keeps the builder's initialisation
  and only takes the Gaussian batch.

Per-arch scores are appended to ``--out`` (CSV) as they come, so an interrupted run resumes;
Kendall tau vs ImageNet top-1 with 95% bootstrap intervals is printed at the end.

    python benchmarks/ood_peer_proxies.py ../shared/ood-vit-nas/tiny.json --space autoformer-tiny \
        --limit 150 --out peer-tiny.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from torch import nn

from autoprox.data.benchmark import load_archs
from autoprox.eval.uncertainty import kendall_ci
from autoprox.spaces import get_space
from autoprox.spaces.layers import KIND_ATTR
from autoprox.stats.batch import BatchConfig, make_batch

ATTN = ("attn_qkv", "attn_proj")
MLP = ("mlp_fc1", "mlp_fc2")
PROXIES = ("dss", "autoproxa", "snip", "naswot", "naswot_gauss")


def tagged(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, getattr(m, KIND_ATTR)) for m in model.modules() if hasattr(m, KIND_ATTR)]


def synflow_terms(model: nn.Module, res: int) -> dict[str, float]:
    """dss and autoproxa from one |W| pass (the model is changed)."""
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    model(torch.ones(1, 3, res, res)).sum().backward()
    dss = autoproxa = 0.0
    for m, kind in tagged(model):
        w, g = m.weight.detach(), m.weight.grad.detach()
        if kind in ATTN:
            dss += float(torch.linalg.matrix_norm(g.reshape(g.shape[0], -1), "nuc")
                         * torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), "nuc"))
            autoproxa += float(g.abs().sum())
        elif kind in MLP or kind == "head":
            times = 2 if kind == "head" else 1
            dss += times * float((g * w).abs().sum())
            autoproxa += times * float(torch.sigmoid(g).sum() / (g.numel() + 1e-9))
    return {"dss": dss, "autoproxa": autoproxa}


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, splits: int = 10) -> float:
    model.eval()
    model.zero_grad()
    n = images.shape[0]
    for s in range(splits):
        lo, hi = s * n // splits, (s + 1) * n // splits
        nn.functional.cross_entropy(model(images[lo:hi]), labels[lo:hi]).backward()
    return sum(float((m.weight.grad * m.weight).abs().sum()) for m, kind in tagged(model)
               if isinstance(m, nn.Linear) and m.weight.grad is not None)


def naswot(model: nn.Module, x: torch.Tensor, redraw: bool) -> float:
    if redraw:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.init.normal_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
    model.eval()
    k = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64)

    def hook(m, inputs, out):
        c = (inputs[0].detach().flatten(1) > 0).double()
        k.add_(c @ c.T + (1 - c) @ (1 - c).T)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.GELU)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return float(torch.linalg.slogdet(k)[1])


def score(space: str, arch: dict, images: torch.Tensor, labels: torch.Tensor, gauss: torch.Tensor) -> dict:
    sp = get_space(space)
    res = images.shape[-1]

    def fresh() -> nn.Module:
        return sp.build(arch, num_classes=1000, img_size=res, seed=0, drop_path=0.1)
    out = synflow_terms(fresh(), res)
    out["snip"] = snip(fresh(), images, labels)
    out["naswot"] = naswot(fresh(), gauss, redraw=True)
    out["naswot_gauss"] = naswot(fresh(), gauss, redraw=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", help="an OoD-ViT-NAS file (tiny.json, ...)")
    ap.add_argument("--space", required=True, help="autoformer-tiny, autoformer-small or autoformer-base")
    ap.add_argument("--limit", type=int, default=None, help="only the first N archs")
    ap.add_argument("--out", required=True, help="per-arch CSV, appended to and resumed from")
    ap.add_argument("--batch-path", default=None, help="an image folder instead of the synthetic batch")
    args = ap.parse_args()
    b, archs, _ = load_archs(args.space, args.bench)
    n = len(archs) if args.limit is None else min(args.limit, len(archs))
    cfg = BatchConfig(source="folder" if args.batch_path else "synthetic", path=args.batch_path,
                      size=64, num_classes=1000)
    batch = make_batch(cfg)
    gauss = torch.randn(64, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = Path(args.out)
    done = {int(r["index"]): r for r in csv.DictReader(out.open())} if out.is_file() else {}
    with out.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=("index",) + PROXIES)
        if not done:
            w.writeheader()
        for i in range(n):
            if i in done:
                continue
            row = {"index": i, **score(args.space, archs[i], batch.images, batch.labels, gauss)}
            w.writerow(row)
            f.flush()
            done[i] = row
            print(f"{len(done)}/{n}", flush=True)
    acc = b.values("imagenet")[:n]
    print(f"| peer proxy ({n} archs) | Kendall tau vs imagenet [95% CI] |\n|---|---|")
    for p in PROXIES:
        ci = kendall_ci([float(done[i][p]) for i in range(n)], acc)
        print(f"| {p} | {ci.estimate:.3f} [{ci.lo:.3f}, {ci.hi:.3f}] |")


if __name__ == "__main__":
    main()
