"""Strided-convolution encoder: raw waveform -> latent vectors at 1/hop of the sample rate."""

from __future__ import annotations

import torch
from torch import nn

from vqspeech.config import EncoderConfig


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

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)
