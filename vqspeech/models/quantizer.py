"""The vector quantizer module: codebook state, straight-through gradients, losses and restarts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vqspeech.config import QuantizerConfig
from vqspeech.models import vq_core


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, F], straight-through: gradients flow to the encoder output
    codes: torch.Tensor  # [B, F] long
    losses: dict[str, torch.Tensor]  # "vq/commit" and, without EMA, "vq/codebook" (weights applied)
    perplexity: torch.Tensor  # scalar, over this batch (all processes when training)
    usage: torch.Tensor  # scalar, fraction of the codebook used in this batch (all processes when training)


class VectorQuantizer(nn.Module):
    def __init__(self, config: QuantizerConfig, dim: int):
        super().__init__()
        self.config = config
        K = config.codebook_size
        self.codebook = nn.Parameter(torch.randn(K, dim) * 0.1, requires_grad=not config.ema)
        self.register_buffer("cluster_size", torch.ones(K))
        self.register_buffer("embed_sum", self.codebook.detach().clone())
        self.register_buffer("initialised", torch.tensor(not config.kmeans_init))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, F] -> vectors [B, D, F]."""
        return self.codebook[codes].transpose(1, 2)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, F] -> codes [B, F]."""
        B, D, F = z.shape
        flat = z.transpose(1, 2).reshape(-1, D)
        return vq_core.nearest_codes(flat.float(), self.codebook.float()).view(B, F)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        centroids = vq_core.kmeans(flat, self.config.codebook_size, self.config.kmeans_iters)
        vq_core.broadcast(centroids)
        self.codebook.data.copy_(centroids)
        self.embed_sum.copy_(centroids)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        dead = self.cluster_size < self.config.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        # Replace on process 0's batch, then share, so every process keeps the same codebook.
        pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        fresh = flat[pick] + 0.01 * flat.std() * torch.randn(n_dead, flat.shape[1], device=flat.device)
        fresh = vq_core.broadcast(fresh.contiguous())
        self.codebook.data[dead] = fresh
        self.embed_sum[dead] = fresh
        self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z: encoder output [B, D, F] -> QuantizerOutput."""
        B, D, F = z.shape
        z = z.float()
        flat = z.transpose(1, 2).reshape(-1, D)
        if self.training and not bool(self.initialised):
            self._kmeans_init(flat.detach())
        codes = vq_core.nearest_codes(flat.detach(), self.codebook.detach())
        counts = vq_core.code_counts(codes, self.config.codebook_size)
        if self.training:  # in eval (e.g. validation on process 0 alone) a collective would deadlock
            counts = vq_core.all_reduce_sum(counts)
        losses = {}
        if self.training and self.config.ema:
            with torch.no_grad():
                self.codebook.data.copy_(vq_core.ema_update(flat.detach(), codes, self.cluster_size, self.embed_sum, self.config.decay))
                self._restart_dead_codes(flat.detach())
        quantized_flat = self.codebook[codes]
        if not self.config.ema:
            losses["vq/codebook"] = (quantized_flat - flat.detach()).pow(2).mean()
            if self.training:
                with torch.no_grad():  # dead-code bookkeeping without EMA updates of the vectors
                    self.cluster_size.mul_(self.config.decay).add_(counts, alpha=1 - self.config.decay)
                    self._restart_dead_codes(flat.detach())
        losses["vq/commit"] = self.config.commitment * (flat - quantized_flat.detach()).pow(2).mean()
        # Straight-through: the forward value is the codeword, the gradient goes to z unchanged.
        quantized = flat + (quantized_flat - flat).detach()
        quantized = quantized.view(B, F, D).transpose(1, 2)
        return QuantizerOutput(
            quantized=quantized,
            codes=codes.view(B, F),
            losses=losses,
            perplexity=vq_core.perplexity(counts),
            usage=(counts > 0).float().mean(),
        )
