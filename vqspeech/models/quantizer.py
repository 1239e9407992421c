"""The vector quantizer module: codebook state, how training assigns codes, losses and restarts.

Three training rules (config.method); at inference every one takes the nearest codeword, so the codes, the
bitstream and the decoders do not depend on which rule trained the codebook:
- "nearest": van den Oord et al. 2017. Hard nearest-neighbour codes, straight-through gradients, the codebook moved
  by exponential moving averages of its members (the paper's appendix; the default) or by the codebook loss.
- "soft_em": Roy et al. 2018 ("Theory and experiments on vector quantized autoencoders", the "VQ-VAE with EM" rows
  of Kaiser et al. 2018). The E-step's responsibilities softmax(-||z - e_k||^2 / T) are approximated by m codes
  drawn per frame; each draw counts 1/m in the EMA M-step, and the decoder reads the mean of the drawn codewords
  (straight-through, as for hard codes).
- "gumbel": the Gumbel-softmax relaxation (Jang et al. 2017; Maddison et al. 2017) as DALL-E's dVAE trains its
  tokens: logits over the codebook (here -||z - e_k||^2, so their argmax is the nearest code), the decoder reads
  the relaxed one-hot's mixture of codewords, the temperature is annealed, and KL(q || uniform) keeps the codebook
  in use. Codewords and encoder both learn by gradient.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqspeech.config import QuantizerConfig
from vqspeech.models import vq_core


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, F]; in training, gradients flow to the encoder output (and codebook, gumbel)
    codes: torch.Tensor  # [B, F] long
    losses: dict[str, torch.Tensor]  # weights applied: "vq/commit"; "vq/codebook" (nearest without EMA); "vq/kl" (gumbel)
    perplexity: torch.Tensor  # scalar, over this batch (all processes when training)
    usage: torch.Tensor  # scalar, fraction of the codebook used in this batch (all processes when training)
    top_codes: torch.Tensor | None = None  # [B, F / pitch_frames] long, codes at two rates only (models/two_rate.py)
    top_perplexity: torch.Tensor | None = None


class VectorQuantizer(nn.Module):
    def __init__(self, config: QuantizerConfig, dim: int):
        super().__init__()
        self.config = config
        K = config.codebook_size
        self.codebook = nn.Parameter(torch.randn(K, dim) * 0.1, requires_grad=config.codebook_by_gradient)
        self.register_buffer("cluster_size", torch.ones(K))
        self.register_buffer("embed_sum", self.codebook.detach().clone())
        self.register_buffer("initialised", torch.tensor(not config.kmeans_init))
        if config.method == "gumbel":  # the temperature's schedule, saved with the model so that a run resumes on it
            self.register_buffer("updates", torch.tensor(0))

    def temperature(self) -> float:
        """The Gumbel-softmax temperature now: exponential from gumbel_tau_start to gumbel_tau_end over
        gumbel_anneal_steps training passes, then held."""
        c = self.config
        progress = min(int(self.updates) / c.gumbel_anneal_steps, 1.0)
        return math.exp(math.log(c.gumbel_tau_start) + progress * (math.log(c.gumbel_tau_end) - math.log(c.gumbel_tau_start)))

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

    def _assign(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Training assignment by config.method: flat [N, D] -> (codes [N] for the statistics, the codewords the
        decoder reads [N, D], extra losses)."""
        c = self.config
        if c.method == "nearest" or not self.training:
            codes = vq_core.nearest_codes(flat.detach(), self.codebook.detach())
            if self.training and c.ema:  # the M-step first: the decoder reads the moved codewords
                with torch.no_grad():
                    onehot = F.one_hot(codes, c.codebook_size)
                    self.codebook.data.copy_(vq_core.ema_update(flat.detach(), onehot, self.cluster_size, self.embed_sum, c.decay))
            return codes, self.codebook[codes], {}
        if c.method == "soft_em":
            with torch.no_grad():
                logits = -vq_core.squared_distances(flat, self.codebook) / c.em_temperature
                draws = torch.multinomial(logits.softmax(-1), c.em_samples, replacement=True)  # [N, m]
                weights = torch.zeros_like(logits).scatter_add_(1, draws, torch.full(draws.shape, 1.0 / c.em_samples, device=flat.device))
                self.codebook.data.copy_(vq_core.ema_update(flat, weights, self.cluster_size, self.embed_sum, c.decay))
            return logits.argmax(-1), weights @ self.codebook.detach(), {}
        logits = -vq_core.squared_distances(flat, self.codebook)  # gumbel: both sides learn through the logits
        soft = F.gumbel_softmax(logits, tau=self.temperature(), hard=False)
        log_q = logits.log_softmax(-1)
        kl = (log_q.exp() * (log_q + math.log(c.codebook_size))).sum(-1).mean()  # KL(q || uniform), >= 0
        self.updates += 1
        return logits.detach().argmax(-1), soft @ self.codebook, {"vq/kl": c.gumbel_kl_weight * kl}

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z: encoder output [B, D, F] -> QuantizerOutput."""
        B, D, F = z.shape
        c = self.config
        z = z.float()
        flat = z.transpose(1, 2).reshape(-1, D)
        if self.training and not bool(self.initialised):
            self._kmeans_init(flat.detach())
        codes, quantized_flat, losses = self._assign(flat)
        counts = vq_core.code_counts(codes, c.codebook_size)
        if self.training:  # in eval (e.g. validation on process 0 alone) a collective would deadlock
            counts = vq_core.all_reduce_sum(counts)
            with torch.no_grad():
                if c.codebook_by_gradient:  # dead-code bookkeeping without EMA updates of the vectors
                    self.cluster_size.mul_(c.decay).add_(counts, alpha=1 - c.decay)
                self._restart_dead_codes(flat.detach())
        if c.method == "nearest" and not c.ema:
            losses["vq/codebook"] = (quantized_flat - flat.detach()).pow(2).mean()
        if c.method == "gumbel" and self.training:
            quantized = quantized_flat  # the relaxation carries the gradient itself
        else:
            losses["vq/commit"] = c.commitment * (flat - quantized_flat.detach()).pow(2).mean()
            # Straight-through: the forward value is the codeword (or the draws' mean), the gradient goes to z unchanged.
            quantized = flat + (quantized_flat - flat).detach()
        quantized = quantized.view(B, F, D).transpose(1, 2)
        return QuantizerOutput(
            quantized=quantized,
            codes=codes.view(B, F),
            losses=losses,
            perplexity=vq_core.perplexity(counts),
            usage=(counts > 0).float().mean(),
        )
