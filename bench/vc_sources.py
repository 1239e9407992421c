"""What the conversion benches do to a source before converting it, to measure what of the source holds a
conversion back: its intonation flattened, its timing stretched, its formants warped (vocal tract length
normalisation). Each one a probe of bench/vc_unseen.py (--flat-pitch, --tempo, --warp), none shipped."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vqspeech.models.encoding import Encoded

SR = 16000


def flat(e: Encoded, levels: int) -> Encoded:
    """The same encoding with every voiced pitch symbol set to the speaker's mean: no intonation."""
    pitch = e.pitch.clone()
    pitch[pitch > 0] = 1 + (levels - 2) // 2  # the symbol of z = 0
    return dataclasses.replace(e, pitch=pitch)


def run_length(codes: torch.Tensor) -> float:
    """Mean length of the runs of one code repeated: the codes change more often in faster speech."""
    c = codes.flatten()
    return float(c.numel() / (1 + int((c[1:] != c[:-1]).sum())))


def stretch(e: Encoded, ratio: float, unit: int) -> Encoded:
    """The encoding slowed down by `ratio` (> 1: longer) in whole pitch frames of `unit` codes, each output frame
    the nearest source frame (repeated or dropped): the timing changes, each frame's content and pitch do not."""
    frames = e.codes.numel() // unit
    out = max(1, round(frames * ratio))
    pick = torch.clamp((torch.arange(out) / ratio).long(), max=frames - 1)
    codes = e.codes[: frames * unit].view(frames, unit)[pick].flatten()
    pitch = None if e.pitch is None else e.pitch[pick]
    hop = e.n_samples / max(1, e.codes.numel())
    return dataclasses.replace(e, codes=codes, pitch=pitch, n_samples=int(codes.numel() * hop))


def formant_scale(wavs: list[np.ndarray], sample_rate: int = 16000, ceiling: float = 5500.0) -> float:
    """How far up the spectrum a voice's resonances sit: the geometric mean of its median F1-F4 (Hz) over the voiced
    frames of all `wavs` (float32 [T] each), by Praat's Burg formant tracker. The ratio of two speakers' scales
    estimates the ratio of their vocal tract lengths (inverted), the warp of vocal tract length normalisation."""
    import parselmouth  # Praat's formant tracker, already the codec's pitch tracker

    rows = []
    for wav in wavs:
        sound = parselmouth.Sound(np.asarray(wav, np.float64), sampling_frequency=sample_rate)
        pitch = sound.to_pitch_ac(time_step=0.01, pitch_floor=60.0, pitch_ceiling=500.0)
        track = sound.to_formant_burg(time_step=0.01, max_number_of_formants=5, maximum_formant=ceiling)
        for t, f0 in zip(pitch.xs(), pitch.selected_array["frequency"]):
            if f0 > 0:
                rows.append([track.get_value_at_time(i, t) for i in (1, 2, 3, 4)])
    rows = np.array(rows, np.float64).reshape(-1, 4)
    rows = rows[np.isfinite(rows).all(1)]
    if len(rows) < 10:
        raise ValueError("too little voiced speech to place its formants")
    return float(np.exp(np.log(np.median(rows, 0)).mean()))


def warped(model, src: np.ndarray, encoded: Encoded, ratio: float, latent_map=None) -> Encoded:
    """The source's codes after raising its formants by `ratio` (vocal tract length normalisation toward the target):
    the waveform resampled so that, played at the model's rate, every frequency is `ratio` times higher, encoded,
    and its codes stretched back, each frame the nearest, to the source's own timing; pitch as `encoded` has it."""
    import soxr

    fast = soxr.resample(src, SR * ratio, SR).astype(np.float32)
    codes = model.encode(fast, latent_map=latent_map).codes
    n = encoded.codes.numel()
    pick = torch.clamp((torch.arange(n) * codes.numel() / n).long(), max=codes.numel() - 1)
    return dataclasses.replace(encoded, codes=codes[pick])
