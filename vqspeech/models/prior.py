"""The prior over the codes: a causal transformer over a model's token stream, conditioned on the voice.

The second stage of every method vqspeech comes from (the VQ-VAE paper's autoregressive prior over its speech
codes, VQ-VAE-2's and DALL-E's priors over tokens, Kaiser et al.'s latent transformer). Here it does two jobs:
it samples speech (codes drawn from it, rendered by the codec's decoder) and it is the entropy model of the .vqs
bitstream (vqspeech/codec/entropy.py codes each token under its predicted distribution).

The stream (vqspeech/data/codes.py): per pitch frame a pitch symbol then its codes, one alphabet for both.
Position t reads the token before it (a start symbol at t = 0) and predicts token t; its phase t mod period says
which kind it is, so the other kind's logits are masked. Attention sees the last `window` positions with a
learned bias per head and distance (no absolute positions: a stream of any length looks the same everywhere).

The arithmetic is chosen so that an exact twin can be built from this model (codec/entropy.ExactPrior): ReLU,
RMSNorm without learned epsilon, the 1/sqrt(d) of attention folded into the query weights, no biases in the
attention. Training uses this float model; the codec and the sampler use the exact one.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vqspeech.config import PriorModelConfig
from vqspeech.data.codes import TokenLayout

RMS_EPS = 1e-5
PAD = -100  # a target past the end of a stream (cross_entropy's ignore_index)


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * self.weight


class Block(nn.Module):
    def __init__(self, c: PriorModelConfig):
        super().__init__()
        self.heads = c.heads
        self.attn_norm = RMSNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim, bias=False)
        self.out = nn.Linear(c.dim, c.dim, bias=False)
        self.distance_bias = nn.Parameter(torch.zeros(c.heads, c.window))  # [H, W]: bias for attending d back
        self.ff_norm = RMSNorm(c.dim)
        self.ff_in = nn.Linear(c.dim, c.ff_dim)
        self.ff_out = nn.Linear(c.ff_dim, c.dim)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], allowed [N, N] bool (causal, within the window), distance [N, N] long -> [B, N, D]."""
        B, N, D = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.distance_bias[:, distance.clamp(0, self.distance_bias.shape[1] - 1)]  # [H, N, N]
        bias = bias.masked_fill(~allowed, float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None].to(q.dtype))  # [B, H, N, D / H]
        x = x + self.drop(self.out(y.transpose(1, 2).reshape(B, N, D)))
        return x + self.drop(self.ff_out(F.relu(self.ff_in(self.ff_norm(x)))))


class CodePrior(nn.Module):
    def __init__(self, config: PriorModelConfig, layout: TokenLayout, voice_dim: int):
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"prior dim {config.dim} is not a multiple of its {config.heads} heads")
        self.config, self.layout, self.voice_dim = config, layout, voice_dim
        self.start_token = layout.vocab  # the input at position 0
        self.token_embedding = nn.Embedding(layout.vocab + 1, config.dim)
        self.phase_embedding = nn.Embedding(layout.period, config.dim)
        self.voice_projection = nn.Linear(voice_dim, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.dim)
        self.head = nn.Linear(config.dim, layout.vocab)
        mask = torch.zeros(layout.period, layout.vocab)  # [phase, vocab]: 0 where the phase's kind, -inf elsewhere
        if layout.pitch_levels:
            mask[0, : layout.codebook_size] = float("-inf")
            mask[1:, layout.codebook_size :] = float("-inf")
        self.register_buffer("kind_mask", mask, persistent=False)

    def forward(self, inputs: torch.Tensor, voice: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """inputs [B, N] long (the token before each position; start_token at position 0 of a stream), voice
        [B, voice_dim], first_position: the stream position of inputs[:, 0] (its phase) -> masked logits [B, N, V]."""
        B, N = inputs.shape
        positions = torch.arange(first_position, first_position + N, device=inputs.device)
        phase = positions % self.layout.period
        x = self.token_embedding(inputs) + self.phase_embedding(phase)[None] + self.voice_projection(voice)[:, None]
        distance = positions[:, None] - positions[None, :]
        allowed = (distance >= 0) & (distance < self.config.window)
        for block in self.blocks:
            x = block(x, allowed, distance)
        return self.head(self.norm(x)) + self.kind_mask[phase][None]

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """What prior_exact.ExactPrior.freeze reads: the weights as they are (a tied FramePrior folds its own)."""
        return self.state_dict()

    def loss(self, tokens: torch.Tensor, voice: torch.Tensor, previous: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """tokens [B, N] (stretches of streams, each starting at a multiple of the period; PAD after a stream's end),
        voice [B, voice_dim], previous [B] the token before each stretch, or [B, period] the frame before it (its
        last column is that token; start_token where it starts the stream; None: all do) -> (mean cross-entropy in nats over the real tokens, metrics: "bits/code" and "bits/pitch",
        means over those positions, and their counts "n/code", "n/pitch")."""
        B, N = tokens.shape
        prev = torch.full((B,), self.start_token, dtype=torch.long, device=tokens.device) if previous is None else previous
        prev = prev[:, -1] if prev.dim() == 2 else prev
        inputs = torch.cat([prev[:, None], tokens[:, :-1].clamp_min(0)], 1)
        return stream_loss(self.forward(inputs, voice), tokens, self.layout)


def stream_loss(logits: torch.Tensor, tokens: torch.Tensor, layout: TokenLayout) -> tuple[torch.Tensor, dict]:
    """logits [B, N, V] of stretches of streams that start at a multiple of the period, tokens [B, N] (PAD after a
    stream's end) -> (mean cross-entropy in nats over the real tokens, metrics: "bits/code" and "bits/pitch", means
    over those positions, and their counts "n/code", "n/pitch")."""
    B, N = tokens.shape
    real = tokens != PAD
    nats = F.cross_entropy(logits.float().reshape(B * N, -1), tokens.reshape(-1), reduction="none", ignore_index=PAD).view(B, N)
    is_pitch = (torch.arange(N, device=tokens.device) % layout.period == 0) & bool(layout.pitch_levels)
    metrics = {}
    for kind, where in (("code", real & ~is_pitch), ("pitch", real & is_pitch)):
        if kind == "pitch" and not layout.pitch_levels:
            continue
        count = where.sum()
        metrics[f"bits/{kind}"] = (nats * where).sum().detach() / count.clamp_min(1) / math.log(2)
        metrics[f"n/{kind}"] = count.detach()
    return (nats * real).sum() / real.sum().clamp_min(1), metrics
