"""Strided-convolution encoder: raw waveform -> latent vectors at 1/hop of the sample rate."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vqspeech.config import EncoderConfig
from vqspeech.precision import inference_autocast


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class Encoder(nn.Module):
    """wav [B, 1, T] (T a multiple of the hop) -> z [B, latent_dim, T // hop]."""

    def __init__(self, config: EncoderConfig, latent_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for stride in config.strides:
            # kernel k, stride s, padding (k - s) // 2: the length divides exactly by s.
            layers += [nn.Conv1d(in_ch, config.channels, config.kernel_size, stride, (config.kernel_size - stride) // 2), nn.ReLU()]
            in_ch = config.channels
        layers += [ResidualBlock(config.channels) for _ in range(config.residual_layers)]
        layers += [nn.ReLU(), nn.Conv1d(config.channels, latent_dim, 1)]
        self.net = nn.Sequential(*layers)
        # He init: with PyTorch's default init the output was nearly constant and the codebook collapsed.
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

        self.normalise_frames = config.normalise_frames
        self.n_strided = 2 * len(config.strides)  # the strided convolutions and their ReLUs, first in self.net

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        z = self.net(wav)
        return local_instance_norm(z, self.normalise_frames) if self.normalise_frames else z

    @torch.no_grad()
    def infer(self, wav: torch.Tensor) -> torch.Tensor:
        """forward for encoding: the strided convolutions, nearly all of the arithmetic, in bfloat16 where the
        device has it natively (3x faster on a Zen 4 core), the frame-rate layers in float32. Measured against
        float32 throughout: 98-99 % of the codes the same, the rest near ties (bench/results/precision-bf16-*.md)."""
        with inference_autocast(wav.device):
            h = self.net[: self.n_strided](wav)
        z = self.net[self.n_strided :](h.float())
        return local_instance_norm(z, self.normalise_frames) if self.normalise_frames else z


def local_instance_norm(z: torch.Tensor, frames: int, eps: float = 1e-5) -> torch.Tensor:
    """z [B, D, F] -> [B, D, F], each channel minus its mean over the 2 * (frames // 2) + 1 frames centred on each
    frame, over their standard deviation (windows cut at the edges, not padded with zeros)."""
    k, pad = 2 * (frames // 2) + 1, frames // 2
    mean = F.avg_pool1d(z, k, 1, pad, count_include_pad=False)
    var = (F.avg_pool1d(z * z, k, 1, pad, count_include_pad=False) - mean * mean).clamp_min(0)
    return (z - mean) / torch.sqrt(var + eps)
