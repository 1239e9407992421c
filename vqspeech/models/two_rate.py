"""Codes at two rates (after VQ-VAE-2, Razavi et al. 2019, for a 1-D code stream): a top code per pitch frame for
slow structure, the bottom codes at the full rate for what the top does not carry.

    z [B, D, F] --down--> [B, D, F / r] --top VQ--> top codes [B, F / r] --up--> u [B, D, F]
    z - u                               --bottom VQ--> bottom codes [B, F]
    what the decoders read: u + the bottom codewords [B, D, F]

r is the model's pitch_frames (4: 62.5 top codes a second at hop 64), so a top code spans exactly one pitch frame
and the codec's windows, which lie on the pitch grid, lie on the top grid too. VQ-VAE-2 conditions the bottom level
on the top by concatenation; here the bottom quantises the residual of the encoder's latents after the top's
reconstruction, which keeps the decoders' input unchanged (one D-dimensional vector a frame).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from vqspeech.config import QuantizerConfig
from vqspeech.models.quantizer import QuantizerOutput, VectorQuantizer


class TwoRateQuantizer(nn.Module):
    """Top codes (config.top_codebook_size of them, one per `rate` frames) and bottom codes (config.codebook_size)."""

    def __init__(self, config: QuantizerConfig, dim: int, rate: int, channels: int = 128):
        super().__init__()
        if rate < 2 or rate % 2:
            raise ValueError(f"top codes every {rate} frames: the rate must be even (it is model.pitch_frames)")
        self.rate = rate
        self.bottom = VectorQuantizer(config, dim)
        self.top = VectorQuantizer(replace(config, codebook_size=config.top_codebook_size, top_codebook_size=0), dim)
        # kernel 2r, stride r, padding r / 2: F frames <-> F / r exactly, each top code seeing its frames and half a
        # frame group either side.
        self.down = nn.Sequential(nn.Conv1d(dim, channels, 2 * rate, rate, rate // 2), nn.ReLU(),
                                  nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv1d(channels, dim, 1))
        self.up = nn.Sequential(nn.ConvTranspose1d(dim, channels, 2 * rate, rate, rate // 2), nn.ReLU(),
                                nn.Conv1d(channels, dim, 3, padding=1))

    @property
    def codebook(self) -> torch.Tensor:
        """The bottom codebook (what one-rate code reads of `quantizer.codebook`)."""
        return self.bottom.codebook

    def context_frames(self) -> int:
        """Frames each side of a frame that its codes depend on through the top path (down, then up): windows of
        the codec need this much more context for chunked codes to equal one-shot codes."""
        # A top code sees its frame group and 1.5 groups either side (the strided conv's half-group padding, then the
        # k=3 conv at the top rate); a bottom frame reads the two nearest top codes through the transposed conv and
        # one frame either side through the last conv: 3r + 1 frames in all, bounded here by 4r.
        return 4 * self.rate

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z [B, D, F] (F a multiple of the rate) -> QuantizerOutput: quantized = u + bottom codewords, codes the bottom
        codes, top_codes [B, F / r]; losses of both levels (the top's as "top/..."), metrics of the bottom."""
        top = self.top(self.down(z.float()))
        u = self.up(top.quantized)
        # The residual's target is detached from u, so the decoders' gradient reaches the top path through u (and
        # the encoder through z) instead of cancelling between u and the residual's straight-through copy of it.
        bottom = self.bottom(z.float() - u.detach())
        losses = dict(bottom.losses)
        losses.update({f"top/{k.split('/')[-1]}": v for k, v in top.losses.items()})
        return QuantizerOutput(quantized=u + bottom.quantized, codes=bottom.codes, losses=losses,
                               perplexity=bottom.perplexity, usage=bottom.usage, top_codes=top.codes,
                               top_perplexity=top.perplexity)

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, D, F] -> (bottom codes [B, F], top codes [B, F / r])."""
        top = self.top.encode(self.down(z.float()))
        return self.bottom.encode(z.float() - self.up(self.top.lookup(top))), top

    def lookup(self, codes: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """bottom codes [B, F], top codes [B, F / r] -> what the decoders read [B, D, F]."""
        return self.up(self.top.lookup(top)) + self.bottom.lookup(codes)
