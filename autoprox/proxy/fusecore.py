"""The fusions' arithmetic (torch only; embedded in exported fused proxies).

Each takes a (parts x archs) float64 tensor and gives (archs,) fused scores: an arch with NaN in
any part scores NaN, the other archs are fused among themselves. ``autoprox.proxy.fuse``
registers these under their names.
"""
from __future__ import annotations

import torch


def ranks(x: torch.Tensor) -> torch.Tensor:
    """1 = lowest, ties averaged (scipy's ``rankdata``)."""
    values, order = torch.sort(x, stable=True)
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    out = torch.empty_like(x, dtype=torch.float64)
    out[order] = ((ends - counts.double() + 1 + ends) / 2)[group]
    return out


def zscores(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std (population std); all 0 for a constant row."""
    sd = x.std(unbiased=False)
    return torch.zeros_like(x) if float(sd) == 0 else (x - x.mean()) / sd


def sum_over_parts(matrix: torch.Tensor, per_part) -> torch.Tensor:
    """Sum over parts of ``per_part(row)`` on the archs with no NaN part; NaN elsewhere."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.dim() != 2:
        raise ValueError(f"fusion needs a (parts x archs) matrix, got shape {tuple(m.shape)}")
    ok = ~torch.isnan(m).any(dim=0)
    out = torch.full((m.shape[1],), float("nan"), dtype=torch.float64)
    if bool(ok.any()):
        total = torch.zeros(int(ok.sum()), dtype=torch.float64)
        for row in m:
            total = total + per_part(row[ok])
        out[ok] = total
    return out


def rank_fractions(matrix: torch.Tensor) -> torch.Tensor:
    """(parts x archs) -> each part's rank / n among the n archs with no NaN part; NaN elsewhere: the
    inputs ``weighted_rank`` weighs, one by one."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    ok = ~torch.isnan(m).any(dim=0)
    out = torch.full(m.shape, float("nan"), dtype=torch.float64)
    if bool(ok.any()):
        out[:, ok] = torch.stack([ranks(row[ok]) / int(ok.sum()) for row in m])
    return out


def rank_sum(matrix: torch.Tensor) -> torch.Tensor:
    """Sum over parts of each arch's rank (1 = lowest, ties averaged) among the NaN-free archs."""
    return sum_over_parts(matrix, ranks)


def sum_of_zscores(matrix: torch.Tensor) -> torch.Tensor:
    """Sum over parts of (x - mean) / std over the NaN-free archs (a constant part adds 0)."""
    return sum_over_parts(matrix, zscores)


def log_rank_sum(matrix: torch.Tensor) -> torch.Tensor:
    """Sum over parts of log(rank / n) among the n NaN-free archs (AZ-NAS's aggregation)."""
    return sum_over_parts(matrix, lambda row: torch.log(ranks(row) / row.numel()))


def weighted_rank(matrix: torch.Tensor, weights) -> torch.Tensor:
    """Sum over parts of weight x rank / n among the n NaN-free archs: a ranker fitted on the parts'
    within-population ranks (``autoprox fit``), one weight per part."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if len(weights) != m.shape[0]:
        raise ValueError(f"weighted_rank needs one weight per part: {len(weights)} for {m.shape[0]} parts")
    w = iter(weights)
    return sum_over_parts(m, lambda row: float(next(w)) * ranks(row) / row.numel())


FUSIONS = {"rank_sum": rank_sum, "sum_of_zscores": sum_of_zscores, "log_rank_sum": log_rank_sum,
           "weighted_rank": weighted_rank}
WEIGHTED = ("weighted_rank",)  # fusions that take one weight per part
