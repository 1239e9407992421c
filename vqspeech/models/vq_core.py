"""Codebook maths, free of module state: nearest codes, EMA statistics, k-means, perplexity.

Distributed training is handled here too: statistics are summed over processes before they are used,
so every process keeps the same codebook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    if distributed():
        dist.broadcast(x, src)
    return x


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """x: [N, D], codebook: [K, D] -> squared Euclidean distances [N, K]."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None]


def nearest_codes(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """x: [N, D], codebook: [K, D] -> codes [N] of the nearest codeword in Euclidean distance."""
    return squared_distances(x, codebook).argmin(dim=1)


def code_counts(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes [N] -> float counts [K]."""
    return torch.bincount(codes, minlength=codebook_size).float()


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the code distribution given by counts [K]: 1 if one code is used, K if all equally."""
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())


def ema_update(x: torch.Tensor, assignment: torch.Tensor, cluster_size: torch.Tensor, embed_sum: torch.Tensor,
               decay: float, eps: float = 1e-5) -> torch.Tensor:
    """One EMA step (van den Oord et al. 2017, appendix; with soft assignments, Roy et al. 2018's M-step).
    x [N, D], assignment [N, K] (one-hot rows for hard codes, or each row's weights over the codes summing to 1).
    Updates cluster_size [K] and embed_sum [K, D] in place with statistics summed over processes, and returns
    the new codebook [K, D]."""
    K = cluster_size.shape[0]
    assignment = assignment.type_as(x)
    counts = all_reduce_sum(assignment.sum(0))
    sums = all_reduce_sum(assignment.t() @ x)
    cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
    embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
    # Laplace smoothing keeps a code that lost all its members from dividing by zero.
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + K * eps) * n
    return embed_sum / smoothed[:, None]


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain k-means on x [N, D] -> centroids [k, D], initialised on random rows (repeated if N < k)."""
    idx = torch.randint(0, x.shape[0], (k,), generator=generator) if x.shape[0] < k else torch.randperm(x.shape[0], generator=generator)[:k]
    centroids = x[idx].clone()
    for _ in range(iters):
        codes = nearest_codes(x, centroids)
        counts = code_counts(codes, k)
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids
