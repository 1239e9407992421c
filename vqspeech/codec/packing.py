"""How the .vqs payload's symbols and the voice vector become bytes (codec/bitstream.py lays out the file).

    pack_bits(values, bits) / unpack_bits(data, bits, count)    fixed-width symbols, most significant bit first
    voice_to_int8(voice) -> (scale, q) / quantise_voice(voice)  the voice vector as int8 times a float16 scale
"""

from __future__ import annotations

import math

import numpy as np

MAX_BITS = 24  # widest symbol we pack (K up to 16.7 M); a header asking for more is corrupt


class BitstreamError(ValueError):
    """A .vqs file that cannot be read: truncated, corrupted, of an unknown version, or not ours."""


def bits_for(levels: int) -> int:
    """Bits per symbol for an alphabet of `levels` symbols: ceil(log2 levels), at least 1."""
    return max(1, math.ceil(math.log2(levels)))


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """values [N] integers in [0, 2**bits) -> ceil(N * bits / 8) bytes, MSB first, zero-padded."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise BitstreamError(f"can only pack a 1-D array of symbols, got shape {v.shape}")
    if not 1 <= bits <= MAX_BITS:
        raise BitstreamError(f"cannot pack {bits}-bit symbols (1..{MAX_BITS})")
    if v.size and (v.min() < 0 or v.max() >= 1 << bits):
        raise BitstreamError(f"symbol out of range for {bits} bits: min {v.min()}, max {v.max()}")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    matrix = (v.astype(np.uint32)[:, None] >> shifts) & 1  # [N, bits], one bit per cell
    return np.packbits(matrix.astype(np.uint8).ravel()).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: exactly ceil(count * bits / 8) bytes -> int64 [count].

    Raises BitstreamError if the byte count is wrong or the padding bits are not zero."""
    if not 1 <= bits <= MAX_BITS:
        raise BitstreamError(f"cannot unpack {bits}-bit symbols (1..{MAX_BITS})")
    n_bits = count * bits
    if len(data) != -(-n_bits // 8):
        raise BitstreamError(f"{count} symbols of {bits} bits need {-(-n_bits // 8)} bytes, found {len(data)}")
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if flat[n_bits:].any():
        raise BitstreamError("non-zero padding bits after the last symbol")
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return flat[:n_bits].reshape(count, bits).astype(np.int64) @ weights


def _voice_scale(v: np.ndarray) -> float:
    """The float16 step for int8 values: the nearest to max |v| / 127, or the next one up where that would
    need |q| > 127 (so clipping never adds error beyond half a step)."""
    peak = float(np.abs(v).max()) if v.size else 0.0
    scale = np.float16(peak / 127)
    # Bump only where the largest value would round past 127.5 steps: a vector that was quantised already (whose
    # peak is 127 steps up to float32 rounding) keeps its scale, which makes quantise_voice idempotent.
    if peak > 0 and (scale == 0 or peak / float(scale) > 127.5):
        scale = np.nextafter(scale, np.float16(np.inf))
    return float(scale)


def voice_to_int8(voice) -> tuple[float, np.ndarray]:
    """A voice vector [D] -> (float16 scale, int8 [D]) with voice ~= q * scale; the file's representation."""
    v = np.asarray(voice, np.float64).reshape(-1)
    if not np.isfinite(v).all():
        raise BitstreamError("voice vector holds non-finite values")
    scale = _voice_scale(v)
    q = np.zeros(v.shape, np.int8) if scale == 0 else np.clip(np.round(v / scale), -127, 127).astype(np.int8)
    return scale, q


def quantise_voice(voice):
    """The voice vector as a file carries it (int8 times a float16 scale), as the input's type: encode applies this
    before decoding, so a file decodes exactly as the in-memory result it was written from. Idempotent."""
    import torch

    scale, q = voice_to_int8(voice.detach().cpu().numpy() if isinstance(voice, torch.Tensor) else voice)
    out = q.astype(np.float32) * np.float32(scale)
    return torch.from_numpy(out) if isinstance(voice, torch.Tensor) else out
