"""Parallel decoder: codes' conditioning features + pitch -> waveform in one pass, no sample loop.

Source-filter synthesis in the STFT domain (as DDSP, Engel et al. 2020): a band-limited pulse train built
from the F0 track carries voicing and harmonic phase, white noise carries the unvoiced part, and a ConvNeXt
over frames predicts a log-gain per frequency bin for each
(the harmonic one zero- or minimum-phase: `ParallelDecoderConfig.phase`). Y = H * STFT(pulses) + exp(N) * STFT(noise),
then the inverse STFT. Every learned layer runs at frame rate (1/hop of the sample rate).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vqspeech.config import ParallelDecoderConfig


def stft_loss() -> nn.Module:
    """The multi-resolution STFT loss the parallel decoder is trained with (and adapted to a voice with:
    conversion.adapt_decoder): five resolutions, from 2048-point frames (pitch harmonics) to 128 (onsets)."""
    import auraloss  # lazily: decoding needs no loss

    return auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[2048, 1024, 512, 256, 128], hop_sizes=[512, 256, 128, 64, 32],
                                                 win_lengths=[2048, 1024, 512, 256, 128])


class ConvNeXtBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.expand = nn.Linear(channels, 3 * channels)
        self.project = nn.Linear(3 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, F] -> [B, C, F]."""
        y = self.norm(self.depthwise(x).transpose(1, 2))
        return x + self.project(F.gelu(self.expand(y))).transpose(1, 2)


def pulse_train(f0: torch.Tensor, sample_rate: int, max_harmonics: int) -> torch.Tensor:
    """f0: [B, T] Hz at the sample rate (0 = unvoiced) -> band-limited pulses [B, T]: the sum of the
    harmonics k * f0 below Nyquist (at most max_harmonics), each of unit amplitude, so that the filter
    alone sets the spectral envelope.

    Closed form of sum_{k=1..N} cos(k phi) (the Dirichlet kernel): sin((N + 1/2) phi) / (2 sin(phi / 2)) - 1/2,
    with N chosen per sample; two sines per sample instead of one cosine per harmonic."""
    phase = torch.remainder(torch.cumsum(2 * math.pi * f0.double() / sample_rate, -1), 2 * math.pi)
    n = torch.clamp(torch.floor((sample_rate / 2) / f0.double().clamp_min(1.0)), 0, max_harmonics)
    half = torch.sin(phase / 2)
    near_zero = half.abs() < 1e-6  # phi -> 0: the limit is N
    kernel = torch.sin((n + 0.5) * phase) / (2 * torch.where(near_zero, torch.ones_like(half), half)) - 0.5
    out = torch.where(near_zero, n, kernel)
    return (out * (f0 > 0)).float()


def minimum_phase(log_magnitude: torch.Tensor) -> torch.Tensor:
    """log_magnitude [B, n_fft // 2 + 1, F] (natural log) -> complex [B, n_fft // 2 + 1, F]: the minimum-phase
    response with that magnitude. The real cepstrum of a log-magnitude is even; keeping c[0] and c[N/2] and
    doubling the causal half (the folding of Oppenheim & Schafer) makes log H analytic inside the unit circle."""
    n_fft = 2 * (log_magnitude.shape[1] - 1)
    cepstrum = torch.fft.irfft(log_magnitude, n=n_fft, dim=1)
    fold = torch.zeros(n_fft, device=log_magnitude.device)
    fold[0] = fold[n_fft // 2] = 1.0
    fold[1:n_fft // 2] = 2.0
    log_response = torch.fft.rfft(cepstrum * fold[:, None], dim=1)
    # exp of a complex tensor as magnitude and angle: the same values, 5x faster than torch.exp on complex input
    return torch.polar(torch.exp(log_response.real), log_response.imag)


class ParallelDecoder(nn.Module):
    def __init__(self, config: ParallelDecoderConfig, cond_channels: int, hop: int, sample_rate: int, voice_dim: int = 0):
        super().__init__()
        if config.phase not in ("zero", "minimum"):
            raise ValueError(f"parallel.phase: {config.phase!r} is not 'zero' or 'minimum'")
        self.config = config
        self.hop = hop
        self.sample_rate = sample_rate
        n_bins = config.n_fft // 2 + 1
        self.input = nn.Conv1d(cond_channels + 2, config.channels, config.kernel_size, padding=config.kernel_size // 2)
        self.blocks = nn.ModuleList(ConvNeXtBlock(config.channels, config.kernel_size) for _ in range(config.layers))
        self.film = None
        if config.voice_film:
            if voice_dim < 1:
                raise ValueError("parallel.voice_film needs the model's voice size (speaker_dim)")
            self.film = nn.ModuleList(nn.Linear(voice_dim, 2 * config.channels) for _ in range(config.layers))
            for layer in self.film:  # identity at the start: (1 + 0) * x + 0
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.norm = nn.LayerNorm(config.channels)
        self.head = nn.Linear(config.channels, 2 * n_bins)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, self.config.n_fft, self.hop, window=self.window, center=True, return_complex=True)

    def forward(self, cond: torch.Tensor, f0: torch.Tensor, noise: torch.Tensor | None = None, *,
                voice: torch.Tensor | None = None) -> torch.Tensor:
        """cond: [B, C, F] conditioning features at frame rate; f0: [B, F * hop] Hz (0 = unvoiced); voice
        [B, speaker_dim] (read by voice_film only) -> waveform [B, F * hop]. `noise` [B, F * hop] may be given
        for reproducibility."""
        B, _, n_frames = cond.shape
        T = n_frames * self.hop
        # Frame-rate pitch features: log-F0 (0 where unvoiced) and the voiced flag, per cond frame.
        f0_frames = f0.view(B, n_frames, self.hop).mean(-1)
        voiced = (f0_frames > 0).float()
        lf0 = torch.log(f0_frames.clamp_min(1.0)) * voiced
        x = self.input(torch.cat([cond, lf0[:, None] - 5.0 * voiced[:, None], voiced[:, None]], 1))
        if self.film is not None and voice is None:
            raise ValueError("this parallel decoder reads the voice in every block (voice_film): pass voice=")
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.film is not None:
                scale, shift = self.film[i](voice.to(x.dtype)).chunk(2, dim=-1)  # [B, channels] each
                x = x * (1 + scale[:, :, None]) + shift[:, :, None]
        gains = self.head(self.norm(x.transpose(1, 2)))  # [B, F, 2 * bins]
        # STFT (center=True) has F + 1 frames, frame j centred at sample j * hop: pad the gains by one frame.
        gains = F.pad(gains.transpose(1, 2), (0, 1), mode="replicate")  # [B, 2 * bins, F + 1]
        harmonic_gain, noise_gain = gains.float().chunk(2, dim=1)
        noise = torch.randn(B, T, device=cond.device) if noise is None else noise
        pulses = pulse_train(f0.float(), self.sample_rate, self.config.max_harmonics)
        harmonic_gain = harmonic_gain.clamp(max=10)
        harmonic_filter = minimum_phase(harmonic_gain) if self.config.phase == "minimum" else torch.exp(harmonic_gain)
        spec = harmonic_filter * self._stft(pulses) + torch.exp(noise_gain.clamp(max=10)) * self._stft(noise)
        return torch.istft(spec, self.config.n_fft, self.hop, window=self.window, center=True, length=T)
