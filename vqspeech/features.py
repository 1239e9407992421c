"""Frame-level features computed from waveforms: log-mel spectra and pitch.

The same functions serve data preparation, training and inference, so the features cannot drift.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import librosa
import numpy as np
import torch


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    return torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=40, fmax=sample_rate / 2)).float()


def log_mel(wav: torch.Tensor, hop: int, sample_rate: int = 16000, n_mels: int = 80, n_fft: int = 1024) -> torch.Tensor:
    """wav: [B, T] with T a multiple of hop -> log-mel [B, n_mels, T // hop], frame i centred on sample hop*i + hop/2."""
    pad = (n_fft - hop) // 2
    x = torch.nn.functional.pad(wav.float().unsqueeze(1), (pad, n_fft - hop - pad), mode="reflect").squeeze(1)
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft, device=wav.device), center=False, return_complex=True)
    mel = _mel_basis(sample_rate, n_fft, n_mels).to(wav.device) @ spec.abs()
    return torch.log(mel.clamp_min(1e-5))[..., : wav.shape[-1] // hop]


def spectral_profile(wav: torch.Tensor, hop: int, sample_rate: int = 16000, n_mels: int = 80,
                     floor_nats: float = 4.0) -> torch.Tensor:
    """wav [B, T] -> the shape of the long-term spectrum of its speech [B, n_mels]: the mean log-mel over the frames
    whose mean log-mel is within `floor_nats` of the loudest frame's (pauses say nothing of the voice), less its mean
    over bands (the recording level says nothing either). On 0.5 s crops of our corpora it is nearer to another
    crop of the same speaker than to one of another speaker 70 % of the time: a weak, but judge-free, voice cue."""
    mel = log_mel(wav, hop, sample_rate, n_mels)  # [B, M, F]
    level = mel.mean(1)  # [B, F]
    speech = (level > level.amax(-1, keepdim=True) - floor_nats).float().detach()
    profile = (mel * speech[:, None]).sum(-1) / speech.sum(-1, keepdim=True)
    return profile - profile.mean(-1, keepdim=True)


@dataclass
class Pitch:
    """A pitch track at one value per `hop` samples: f0 in Hz, 0 where unvoiced."""

    f0: np.ndarray  # [F] float32
    hop: int

    @property
    def voiced(self) -> np.ndarray:
        return self.f0 > 0

    def log_stats(self) -> tuple[float, float]:
        """Mean and standard deviation of log-F0 over voiced frames (defaults for unvoiced audio)."""
        lf0 = np.log(self.f0[self.voiced])
        if lf0.size < 2:
            return math.log(150.0), 0.2
        return float(lf0.mean()), float(max(lf0.std(), 0.05))


def extract_pitch(wav: np.ndarray, hop: int, sample_rate: int = 16000, floor: float = 60.0, ceiling: float = 500.0,
                  reference_peak: float | None = None) -> Pitch:
    """F0 by Praat's autocorrelation method, one value per `hop` samples (frame j centred on hop*j + hop/2).

    wav: float32 [T] -> Pitch with f0: [ceil(T / hop)]. Praat's silence threshold is relative to the peak
    of the sound it is given; when `wav` is a window of a longer file, pass the file's peak as
    `reference_peak` so that the window decides silence as the whole file would.
    """
    import parselmouth

    n_frames = math.ceil(len(wav) / hop)
    sound = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=sample_rate)
    silence = 0.03  # Praat's default, relative to the peak
    if reference_peak is not None:
        silence = min(1.0, 0.03 * reference_peak / max(float(np.abs(wav).max()), 1e-9))
    track = sound.to_pitch_ac(time_step=hop / sample_rate, pitch_floor=floor, pitch_ceiling=ceiling, silence_threshold=silence)
    times = track.xs()
    values = track.selected_array["frequency"]
    centres = (np.arange(n_frames) * hop + hop / 2) / sample_rate
    if len(times) == 0:
        return Pitch(np.zeros(n_frames, np.float32), hop)
    # Nearest Praat frame; the epsilon settles exact half-way ties the same way whatever the window length.
    idx = np.clip(np.floor((centres - times[0]) / (hop / sample_rate) + 0.5 + 1e-6).astype(int), 0, len(times) - 1)
    f0 = values[idx].astype(np.float32)
    outside = (centres < times[0] - hop / sample_rate) | (centres > times[-1] + hop / sample_rate)
    f0[outside] = 0.0
    return Pitch(f0, hop)


def quantise_pitch(pitch: Pitch, mean: float, std: float, levels: int, z_range: float) -> np.ndarray:
    """Speaker-normalised log-F0 -> integer symbols: 0 unvoiced, 1..levels-1 uniform over [-z_range, z_range]."""
    z = np.zeros_like(pitch.f0)
    v = pitch.voiced
    z[v] = (np.log(pitch.f0[v]) - mean) / std
    steps = levels - 2
    q = np.round((np.clip(z, -z_range, z_range) + z_range) / (2 * z_range) * steps).astype(np.int64) + 1
    q[~v] = 0
    return q


def dequantise_pitch(symbols: torch.Tensor, levels: int, z_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """symbols [..., F] -> (z [..., F] float, voiced [..., F] float); z is 0 where unvoiced."""
    voiced = (symbols > 0).float()
    z = ((symbols - 1).float() / (levels - 2) * 2 * z_range - z_range) * voiced
    return z, voiced


def _fill_unvoiced(z: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """z [B, F] with each unvoiced frame given its nearest voiced frame's value (either side), so that
    interpolation across a voicing edge neither sags towards 0 Hz nor glides in from the previous word."""
    F = z.shape[-1]
    idx = torch.arange(F, device=z.device).expand_as(z)
    last = torch.where(voiced > 0, idx, torch.full_like(idx, -F)).cummax(-1).values
    following = torch.where(voiced > 0, idx, torch.full_like(idx, 2 * F)).flip(-1).cummin(-1).values.flip(-1)
    source = torch.where(idx - last <= following - idx, last, following).clamp(0, F - 1)
    return z.gather(-1, source)


def f0_at_sample_rate(z: torch.Tensor, voiced: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, hop: int) -> torch.Tensor:
    """Normalised pitch z, voiced: [B, F] at one value per `hop` samples, rendered with log-F0 statistics
    mean, std: [B] -> F0 in Hz [B, F * hop], interpolated linearly between frame centres, 0 where unvoiced."""
    f0 = torch.exp(mean[:, None] + std[:, None] * _fill_unvoiced(z, voiced))
    f0_s = torch.nn.functional.interpolate(f0[:, None], scale_factor=hop, mode="linear", align_corners=False)[:, 0]
    return f0_s * voiced.repeat_interleave(hop, dim=-1)


def excitation(f0: torch.Tensor, harmonics: int, sample_rate: int = 16000) -> torch.Tensor:
    """Sinusoidal source signal (neural source-filter style) from F0 [B, T] in Hz (0 = unvoiced)
    -> [B, harmonics, T]: sin(k * phase) for k = 1..harmonics, harmonics above Nyquist silenced."""
    phase = torch.cumsum(2 * math.pi * f0.double() / sample_rate, dim=-1)
    phase = torch.remainder(phase, 2 * math.pi).float()
    k = torch.arange(1, harmonics + 1, dtype=torch.float32, device=f0.device)[None, :, None]
    audible = (k * f0[:, None] < sample_rate / 2).float()
    return torch.sin(k * phase[:, None]) * audible * (f0[:, None] > 0).float()
