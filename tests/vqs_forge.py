"""Forging .vqs files by the layout the bitstream docstring spells, written independently of the module under
test: random valid contents (`example`), the version 1-3 headers byte by byte, and files with a valid checksum
around anything (`forge`), so that tests reach the checks behind the CRC."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict

import numpy as np
from hypothesis import strategies as st

from vqspeech.codec.bitstream import MAGIC, PLAIN_VERSION as VERSION, Header, pack_bits, quantise_voice

# A few thousand examples in all, a few seconds; no example database written into the repository.
FAST = dict(deadline=None, database=None)


def example(K: int, n: int, levels: int, pitch_frames: int = 4, seed: int = 0, speaker: str | None = "alice",
            voice_dim: int = 0):
    """A random but valid (header, codes, pitch); the largest symbols always occur when there is room. voice_dim > 0:
    with a voice vector of that many values, as a file holds it."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, K, n)
    if n:
        codes[rng.integers(n)] = K - 1
    pitch = None
    if levels:
        pitch = rng.integers(0, levels, n // pitch_frames)
        if pitch.size:
            pitch[rng.integers(pitch.size)] = levels - 1
    hop = 64
    header = Header(model="0123456789abcdef", sample_rate=16000, hop=hop, codebook_size=K, pitch_levels=levels,
                    pitch_frames=pitch_frames, n_frames=n, n_samples=max(0, n * hop - int(rng.integers(0, hop))),
                    speaker=speaker, lf0_mean=float(rng.normal(5.0, 0.5)), lf0_std=float(rng.uniform(0.05, 0.5)),
                    voice=tuple(quantise_voice(rng.normal(0, 0.3, voice_dim))) if voice_dim else None)
    return header, codes, pitch


def leb128(n: int) -> bytes:
    """The varint of the v2 header, written here independently of the module under test."""
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def v2_head(header: Header | None = None, *, ints: tuple | None = None, speaker: bytes | None = None,
            lf0: tuple = (5.0, 0.25), model: bytes = bytes.fromhex("0123456789abcdef")) -> bytes:
    """The v2 header between the version byte and the payload, as the layout in the docstring spells it;
    from a Header, or from raw (possibly invalid) values."""
    if header is not None:
        h = header
        ints = (h.sample_rate, h.hop, h.codebook_size, h.pitch_levels, h.pitch_frames, h.n_frames, h.n_frames * h.hop - h.n_samples)
        speaker = b"" if h.speaker is None else h.speaker.encode()
        lf0, model = (h.lf0_mean, h.lf0_std), bytes.fromhex(h.model)
    return model + struct.pack(">ff", *lf0) + b"".join(map(leb128, ints)) + bytes([len(speaker)]) + speaker


def voice_field(voice) -> bytes:
    """The v3 voice field as the docstring spells it: length, float16 scale, int8 values (or one zero byte)."""
    if not voice:
        return b"\x00"
    v = np.asarray(voice, np.float64)
    scale = np.float16(np.abs(v).max() / 127)
    return bytes([v.size]) + struct.pack(">e", scale) + np.round(v / float(scale)).astype(np.int8).tobytes()


def v3_head(header: Header) -> bytes:
    return v2_head(header) + voice_field(header.voice)


def as_v2(header: Header, codes, pitch) -> bytes:
    """A version 2 file (no voice field), as the session-2 writer laid it out."""
    return forge(v2_head(header), pack_bits(codes, header.code_bits) + (pack_bits(pitch, header.pitch_bits) if pitch is not None else b""),
                 version=2)


def forge(head: bytes, payload: bytes = b"", version: int = VERSION) -> bytes:
    """A file with a valid checksum around an arbitrary header: reaches the checks behind the CRC."""
    body = MAGIC + bytes([version]) + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def forge_v1(meta: bytes | dict, payload: bytes = b"") -> bytes:
    """A version 1 file (JSON header) around an arbitrary header, as the old writer laid it out."""
    if isinstance(meta, dict):
        meta = json.dumps(meta).encode()
    return forge(struct.pack(">I", len(meta)) + meta, payload, version=1)


def as_v1(header: Header, codes, pitch) -> bytes:
    meta = {k: v for k, v in asdict(header).items() if k != "version"}
    return forge_v1(meta, pack_bits(codes, header.code_bits) + (pack_bits(pitch, header.pitch_bits) if pitch is not None else b""))


files = st.builds(example, K=st.integers(2, 4096), n=st.integers(0, 600), levels=st.sampled_from([0, 2, 3, 32, 256]),
                  pitch_frames=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
                  speaker=st.sampled_from([None, "alice", "Zoë ☃"]), voice_dim=st.sampled_from([0, 1, 64]))
