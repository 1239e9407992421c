"""Chunked decoding, so that hour-long recordings need no more memory than a minute; the chunked encoder it pairs
with is models/encoding.encode_stream. Decoding runs `decode_chunk` on slices of the codes and
writes each piece as it comes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from vqspeech.models.encoding import Encoded
from vqspeech.models.vqvae import VQSpeech

CROSSFADE_SECONDS = 0.256  # overlap of consecutive decoded chunks (a whole number of pitch frames at 16 kHz)
# Decoded chunk length. Shorter chunks keep the decoder's activations nearer the core's cache: on one Zen 4 thread a
# 211 s file decoded at 51-58x real time in 10 s chunks against 47-48x in 20 s ones. The crossfaded seams this adds
# (one per 10 s) do not click: bench/results/seams-parallel.md measured them at 5 s chunks. The overlap costs 2.6 %.
DECODE_CHUNK_SECONDS = 10.0


def decode_chunk(model: VQSpeech, encoded: Encoded, speaker: str | int | None, lf0: tuple[float, float] | None,
                 generator: torch.Generator | None, decoder: str | None = None) -> np.ndarray:
    """The one place the codec calls the decoder: swap this for a faster sampler.

    Each chunk starts the decoder afresh (the WaveNet from silence, the pulse train's phase at zero); the
    chunks overlap and decode_stream crossfades them, so no edge is heard as a step."""
    return model.decode(encoded, speaker, lf0=lf0, generator=generator, decoder=decoder)


def decode_stream(model: VQSpeech, encoded: Encoded, speaker: str | int | None, lf0: tuple[float, float] | None = None,
                  chunk_seconds: float = DECODE_CHUNK_SECONDS, generator: torch.Generator | None = None,
                  decoder: str | None = None, overlap_seconds: float = CROSSFADE_SECONDS) -> Iterator[np.ndarray]:
    """Encoded (codes [F], pitch [F // pitch_frames]) -> waveform pieces, n_samples in all, in the voice of the
    training speaker `speaker`, or with None the voice vector the encoding carries.

    Chunk k decodes its frames plus `overlap_seconds` of the next chunk's; that extra tail is crossfaded
    (raised cosine) into the start of chunk k + 1, where the fresh decoder is least settled. Memory stays
    bounded by the chunk length; the overlap costs overlap / chunk more decoding (2.6 % by default)."""
    c = model.config
    unit = c.pitch_frames if encoded.pitch is not None or encoded.top is not None else 1
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
        top = None if encoded.top is None else encoded.top[a // unit : e // unit]
        piece = Encoded(codes=encoded.codes[a:e], pitch=pitch, lf0_mean=encoded.lf0_mean, lf0_std=encoded.lf0_std, n_samples=n,
                        voice=encoded.voice, top=top)
        wav = np.array(decode_chunk(model, piece, speaker, lf0, generator, decoder), dtype=np.float32)
        if tail is not None and tail.size:
            fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(tail.size) + 0.5) / tail.size)).astype(np.float32)
            wav[: tail.size] = tail * (1 - fade) + wav[: tail.size] * fade
        body = max(0, min(b * c.hop, encoded.n_samples) - a * c.hop)
        tail = wav[body:]
        yield wav[:body]


