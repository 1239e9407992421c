"""Encoding: a waveform (or a stream of blocks of one) -> Encoded, the one path behind VQSpeech.encode and the codec.

Windows of `chunk_seconds` (+ `pitch_context_seconds` each side) get their Praat pitch track; sub-windows of
`encoder_seconds` (+ the encoder's receptive field each side) get their codes. With the receptive field as context
the codes equal those of encoding the whole signal at once (tests/test_codec_cli.py checks it), so an hour-long
recording needs no more memory than a minute. Equal up to float rounding: convolutions of other lengths round
differently, and a code at a near tie can flip (2 of 30 000 codes with 0.5 s windows, none with 2 s, against 5 s, on
120 s of speech). The pitch track equals the one-window track when the audio fits in one window (120 s by default);
over longer audio Praat's global choices (the path finder, the silence threshold relative to the peak) can differ
near window edges. The utterance's log-F0 statistics are taken over the whole F0 track, which is kept (4 bytes per
pitch frame) and quantised at the end.

`encoder_seconds` is 2 s for speed: one window's activations stay in the core's cache (one thread of an AMD EPYC
(Zen 4) encodes 120 s of speech at 92x real time with 2 s windows, 63x with 5 s, 20x in one pass of 60 s); below
about 1 s the context each side costs more than the cache saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from vqspeech import features


@dataclass
class Encoded:
    """One utterance as the codec carries it."""

    codes: torch.Tensor  # [F] long, F = padded length // hop
    pitch: torch.Tensor | None  # [F // pitch_frames] long symbols (0 = unvoiced), None without pitch
    lf0_mean: float  # log-F0 statistics of the utterance: the speaker-normalised pitch is undone with them
    lf0_std: float
    n_samples: int  # original length in samples
    voice: torch.Tensor | None = None  # [speaker_dim] the speaker's voice vector (voice="vector" models), as quantised
    dvector: np.ndarray | None = None  # [256] the d-vector it was mapped from (in memory only; no file carries it)
    top: torch.Tensor | None = None  # [F // pitch_frames] long, the top codes of a model whose codes come at two rates


VOICE_SECONDS = 20.0  # the voice vector is computed on a recording's first seconds: enough to place a voice
NO_PITCH_LF0 = (float(np.log(150.0)), 0.2)  # the log-F0 (mean, std) recorded by a model without pitch

# Praat's autocorrelation pitch needs 3 periods of the 60 Hz floor (features.extract_pitch) per window.
_MIN_PITCH_SECONDS = 3 / 60.0


def encoder_context(model) -> int:
    """Samples of context each side of a window that make chunked codes equal one-shot codes.

    The receptive field of the encoder's convolution chain (an upper bound for each side), rounded up
    to whole codes so that windows stay on the code grid (to whole pitch frames for codes at two rates, whose top
    codes lie on the pitch grid, plus the top path's own reach)."""
    field, jump = 1, 1
    for m in model.encoder.modules():
        if isinstance(m, torch.nn.Conv1d):
            field += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    unit = model.config.hop
    field += 2 * (model.config.encoder.normalise_frames // 2) * model.config.hop  # the normalisation's window
    if model.two_rate:
        field += model.quantizer.context_frames() * model.config.hop
        unit = model.config.pitch_hop
    return -(-field // unit) * unit


class _Window:
    """A sliding view [a, b) of a stream of `n` samples, zero-extended to `total`; a never goes back."""

    def __init__(self, blocks: Iterable[np.ndarray], n: int, total: int):
        self._it, self._n, self._total = iter(blocks), n, total
        self._buf, self._start, self._read = np.zeros(0, np.float32), 0, 0

    def get(self, a: int, b: int) -> np.ndarray:
        end = self._start + self._buf.size
        assert self._start <= a <= end, "windows must overlap or touch"
        parts = [self._buf[a - self._start :]]
        while end < b:
            x = next(self._it, None)
            if x is None:
                if self._read != self._n:
                    raise ValueError(f"the audio changed while it was read ({self._read} samples, expected {self._n})")
                x = np.zeros(self._total - end, np.float32)
            else:
                self._read += x.size
                x = x[: max(0, self._n - (self._read - x.size))]  # never read past n (a changed file)
            parts.append(np.asarray(x, np.float32))
            end += x.size
        self._buf, self._start = np.concatenate(parts), a
        return self._buf[: b - a]


def _seconds_to(seconds: float, unit: int, sample_rate: int) -> int:
    """`seconds` as samples, rounded up to a whole number of `unit`s (at least one)."""
    return max(unit, math.ceil(seconds * sample_rate / unit) * unit)


@torch.no_grad()  # not inference_mode: what it returns may feed code that needs gradients (convert fit)
def encode_stream(model, blocks: Iterable[np.ndarray], n_samples: int, *, chunk_seconds: float = 120.0,
                  encoder_seconds: float = 2.0, pitch_context_seconds: float = 1.0,
                  context: int | None = None, peak: float | None = None,
                  latent_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Encoded:
    """A stream of normalised float32 blocks at the model's rate, `n_samples` in all -> Encoded. `model`: a VQSpeech.

    The codes do not depend on the chunking; the pitch track does not while the audio fits in one window.
    `context` overrides the encoder context in samples (tests use it to show that less is not enough).
    `peak`: the whole signal's peak (Level.peak), so pitch windows judge silence as a one-shot pass would.
    `latent_map`: applied to the encoder's latents [1, D, F] before they are quantised (latent_match.LatentMatch); it
    must work frame by frame, so that the codes still do not depend on the chunking."""
    c = model.config
    P, sr = c.pitch_hop, c.sample_rate
    total = model.pad_length(n_samples)
    if c.pitch and total < _MIN_PITCH_SECONDS * sr:
        raise ValueError(f"audio too short: {n_samples / sr:.3f} s (pitch analysis needs at least {_MIN_PITCH_SECONDS:.2f} s)")
    enc_ctx = encoder_context(model) if context is None else context
    chunk = _seconds_to(chunk_seconds, P, sr)
    enc_chunk = _seconds_to(encoder_seconds, P, sr)
    ctx = max(_seconds_to(pitch_context_seconds, P, sr), -(-enc_ctx // P) * P, _seconds_to(_MIN_PITCH_SECONDS, P, sr))
    window = _Window(blocks, n_samples, total)
    codes, tops, f0, head = [], [], [], []
    head_wanted = int(VOICE_SECONDS * sr) if c.voice == "vector" else 0
    for s in range(0, total, chunk):
        e = min(s + chunk, total)
        a, b = max(0, s - ctx), min(total, e + ctx)
        w = torch.from_numpy(window.get(a, b))
        if head_wanted > 0:  # the voice is placed from the first seconds
            head.append(w[s - a : min(e, n_samples) - a].numpy()[:head_wanted].copy())
            head_wanted -= head[-1].size
        for s2 in range(s, e, enc_chunk):
            e2 = min(s2 + enc_chunk, e)
            a2, b2 = max(a, s2 - enc_ctx), min(b, e2 + enc_ctx)
            z = model.encoder.infer(w[a2 - a : b2 - a][None, None].to(model.device))
            z = z if latent_map is None else latent_map(z)
            window_codes, window_top = model.quantise(z)
            codes.append(window_codes[0, (s2 - a2) // c.hop : (e2 - a2) // c.hop].cpu())
            if window_top is not None:  # on the pitch grid: s2 - a2 and e2 - a2 are whole pitch frames
                tops.append(window_top[0, (s2 - a2) // P : (e2 - a2) // P].cpu())
        if c.pitch:
            f0.append(features.extract_pitch(w.numpy(), P, sr, reference_peak=peak).f0[(s - a) // P : (e - a) // P])
    pitch, (mean, std) = None, NO_PITCH_LF0
    if c.pitch:
        track = features.Pitch(np.concatenate(f0), P)
        mean, std = track.log_stats()
        pitch = torch.from_numpy(features.quantise_pitch(track, mean, std, c.pitch_levels, c.pitch_z_range))
    voice, dvector = model.voice_of(np.concatenate(head)) if head else (None, None)
    return Encoded(codes=torch.cat(codes), pitch=pitch, lf0_mean=mean, lf0_std=std, n_samples=n_samples, voice=voice,
                   dvector=dvector, top=torch.cat(tops) if tops else None)
