"""Chunked encoding and decoding, so that hour-long recordings need no more memory than a minute.

Encoding reads the file twice, block by block: the first pass measures what needs the whole file (its
length and loudness), the second normalises, encodes and tracks pitch window by window:

    windows of `chunk_seconds` (+ `pitch_context_seconds` each side) -> Praat pitch per window
      sub-windows of `encoder_seconds` (+ the encoder's receptive field each side) -> codes

With the receptive field as context, the codes equal those of a one-shot `VQSpeech.encode` exactly
(tests/test_codec_cli.py checks it). The pitch track equals the one-shot track when the file fits in
one window (120 s by default); over longer files Praat's global choices (the path finder, the silence
threshold relative to the file's peak) can differ near window edges. The utterance's log-F0 statistics
are taken over the whole file's F0 track, which is kept (4 bytes per pitch frame) and quantised at
the end, exactly as the one-shot encoder does.

Decoding runs `decode_chunk` on slices of the codes and writes each piece as it comes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from vqspeech import audio, features
from vqspeech.models.vqvae import VOICE_SECONDS, Encoded, VQSpeech

# Praat's autocorrelation pitch needs 3 periods of the 60 Hz floor (features.extract_pitch) per window.
_MIN_PITCH_SECONDS = 3 / 60.0


Level = audio.Level
measure_level = audio.measure_level


def encoder_context(model: VQSpeech) -> int:
    """Samples of context each side of a window that make chunked codes equal one-shot codes.

    The receptive field of the encoder's convolution chain (an upper bound for each side), rounded up
    to whole codes so that windows stay on the code grid."""
    field, jump = 1, 1
    for m in model.encoder.modules():
        if isinstance(m, torch.nn.Conv1d):
            field += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    hop = model.config.hop
    return -(-field // hop) * hop


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


@torch.inference_mode()
def encode_stream(model: VQSpeech, blocks: Iterable[np.ndarray], n_samples: int, *, chunk_seconds: float = 120.0,
                  encoder_seconds: float = 5.0, pitch_context_seconds: float = 1.0,
                  context: int | None = None, peak: float | None = None) -> Encoded:
    """A stream of normalised float32 blocks at the model's rate, `n_samples` in all -> Encoded.

    Equal to model.encode(concatenated blocks) (codes exactly; pitch as the module docstring says).
    `context` overrides the encoder context in samples (tests use it to show that less is not enough).
    `peak`: the whole signal's peak (Level.peak), so pitch windows judge silence as a one-shot pass would."""
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
    codes, f0, head = [], [], []
    head_wanted = int(VOICE_SECONDS * sr) if c.voice == "vector" else 0
    for s in range(0, total, chunk):
        e = min(s + chunk, total)
        a, b = max(0, s - ctx), min(total, e + ctx)
        w = torch.from_numpy(window.get(a, b))
        if head_wanted > 0:  # the voice is placed from the first seconds, as model.encode does
            head.append(w[s - a : min(e, n_samples) - a].numpy()[:head_wanted].copy())
            head_wanted -= head[-1].size
        for s2 in range(s, e, enc_chunk):
            e2 = min(s2 + enc_chunk, e)
            a2, b2 = max(a, s2 - enc_ctx), min(b, e2 + enc_ctx)
            z = model.encoder(w[a2 - a : b2 - a][None, None])
            codes.append(model.quantizer.encode(z)[0, (s2 - a2) // c.hop : (e2 - a2) // c.hop])
        if c.pitch:
            f0.append(features.extract_pitch(w.numpy(), P, sr, reference_peak=peak).f0[(s - a) // P : (e - a) // P])
    pitch, mean, std = None, float(np.log(150.0)), 0.2  # model.encode's values without pitch
    if c.pitch:
        track = features.Pitch(np.concatenate(f0), P)
        mean, std = track.log_stats()
        pitch = torch.from_numpy(features.quantise_pitch(track, mean, std, c.pitch_levels, c.pitch_z_range))
    voice, dvector = model.voice_of(np.concatenate(head)) if head else (None, None)
    return Encoded(codes=torch.cat(codes), pitch=pitch, lf0_mean=mean, lf0_std=std, n_samples=n_samples, voice=voice,
                   dvector=dvector)


CROSSFADE_SECONDS = 0.256  # overlap of consecutive decoded chunks (a whole number of pitch frames at 16 kHz)


def decode_chunk(model: VQSpeech, encoded: Encoded, speaker: str | int | None, lf0: tuple[float, float] | None,
                 generator: torch.Generator | None, decoder: str | None = None) -> np.ndarray:
    """The one place the codec calls the decoder: swap this for a faster sampler.

    Each chunk starts the decoder afresh (the WaveNet from silence, the pulse train's phase at zero); the
    chunks overlap and decode_stream crossfades them, so no edge is heard as a step."""
    return model.decode(encoded, speaker, lf0=lf0, generator=generator, decoder=decoder)


def decode_stream(model: VQSpeech, encoded: Encoded, speaker: str | int | None, lf0: tuple[float, float] | None = None,
                  chunk_seconds: float = 20.0, generator: torch.Generator | None = None,
                  decoder: str | None = None, overlap_seconds: float = CROSSFADE_SECONDS) -> Iterator[np.ndarray]:
    """Encoded (codes [F], pitch [F // pitch_frames]) -> waveform pieces, n_samples in all, in the voice of the
    training speaker `speaker`, or with None the voice vector the encoding carries.

    Chunk k decodes its frames plus `overlap_seconds` of the next chunk's; that extra tail is crossfaded
    (raised cosine) into the start of chunk k + 1, where the fresh decoder is least settled. Memory stays
    bounded by the chunk length; the overlap costs overlap / chunk more decoding (1.3 % by default)."""
    c = model.config
    unit = c.pitch_frames if encoded.pitch is not None else 1
    frames = max(unit, round(chunk_seconds * c.sample_rate / c.hop) // unit * unit)
    overlap = round(overlap_seconds * c.sample_rate / c.hop) // unit * unit
    n_frames = encoded.codes.shape[0]
    tail = None  # the previous chunk's decoding of the overlap, to fade out
    for a in range(0, n_frames, frames):
        b = min(a + frames, n_frames)
        e = min(b + overlap, n_frames)
        n = min(e * c.hop, encoded.n_samples) - a * c.hop
        if n <= 0:
            return
        pitch = None if encoded.pitch is None else encoded.pitch[a // unit : e // unit]
        piece = Encoded(codes=encoded.codes[a:e], pitch=pitch, lf0_mean=encoded.lf0_mean, lf0_std=encoded.lf0_std, n_samples=n,
                        voice=encoded.voice)
        wav = np.array(decode_chunk(model, piece, speaker, lf0, generator, decoder), dtype=np.float32)
        if tail is not None and tail.size:
            fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(tail.size) + 0.5) / tail.size)).astype(np.float32)
            wav[: tail.size] = tail * (1 - fade) + wav[: tail.size] * fade
        body = max(0, min(b * c.hop, encoded.n_samples) - a * c.hop)
        tail = wav[body:]
        yield wav[:body]


