"""The .vqs file format: one encoded utterance, self-describing, checksummed.

Layout (all integers big-endian):

    offset 0   b"VQS"                       magic
    offset 3   uint8 version                 refused if not one we read
    offset 4   uint32 header length H
    offset 8   H bytes of UTF-8 JSON         the Header below (an object; unknown keys are ignored)
    offset 8+H codes, ceil(log2 K) bits each, most significant bit first, zero-padded to a byte
               then pitch symbols, ceil(log2 pitch_levels) bits each, likewise (absent without pitch)
    end - 4    uint32 CRC32 (zlib) of everything before it

Parsing is defensive: every length is checked against the file size before it is used, the JSON is
parsed as data (never eval, never pickle), every field is type- and range-checked, and every
problem raises `BitstreamError` with a one-line message. Nothing else escapes `unpack`.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np

MAGIC = b"VQS"
VERSION = 1
_PREFIX = struct.Struct(">3sBI")  # magic, version, header length
_CRC = struct.Struct(">I")
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


def _f32(x: float) -> float:
    """Round to float32: the log-F0 statistics travel as float32 (7 significant digits are plenty)."""
    return float(np.float32(x))


@dataclass
class Header:
    """Everything a decoder needs besides the model; `model` names the model whose codebook made the codes."""

    model: str  # hex model fingerprint (vqspeech.models.vqvae.model_fingerprint)
    sample_rate: int
    hop: int  # samples per code
    codebook_size: int  # K
    pitch_levels: int  # 0: no pitch side information
    pitch_frames: int  # codes per pitch symbol
    n_frames: int  # number of codes
    n_samples: int  # audio length the codes stand for (<= n_frames * hop)
    speaker: str | None = None  # the recorded speaker's name, if known
    lf0_mean: float = 0.0  # utterance log-F0 statistics (float32 precision)
    lf0_std: float = 0.0

    def __post_init__(self):
        self.lf0_mean, self.lf0_std = _f32(self.lf0_mean), _f32(self.lf0_std)

    @property
    def code_bits(self) -> int:
        return bits_for(self.codebook_size)

    @property
    def pitch_bits(self) -> int:
        return bits_for(self.pitch_levels) if self.pitch_levels else 0

    @property
    def n_pitch(self) -> int:
        return self.n_frames // self.pitch_frames if self.pitch_levels else 0

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def payload_bytes(self) -> int:
        return -(-self.n_frames * self.code_bits // 8) + -(-self.n_pitch * self.pitch_bits // 8)

    @property
    def bitrate(self) -> float:
        """Nominal bits per second of codes plus pitch, without headers or byte padding."""
        frames_per_s = self.sample_rate / self.hop
        return frames_per_s * self.code_bits + (frames_per_s / self.pitch_frames * self.pitch_bits if self.pitch_levels else 0.0)


# field -> (type, minimum, maximum); None = unbounded. Ranges keep a corrupt header from asking for
# absurd allocations before the payload-size check catches it.
_INT_FIELDS = {
    "sample_rate": (1, 10_000_000),
    "hop": (1, 1 << 20),
    "codebook_size": (2, 1 << MAX_BITS),
    "pitch_levels": (0, 1 << MAX_BITS),
    "pitch_frames": (1, 1 << 20),
    "n_frames": (0, 1 << 40),
    "n_samples": (0, 1 << 50),
}


def _check_header(h: dict) -> Header:
    if not isinstance(h, dict):
        raise BitstreamError("header is not a JSON object")
    values = {}
    for name, (lo, hi) in _INT_FIELDS.items():
        v = h.get(name)
        if type(v) is not int:  # bool is an int subclass: refuse it too
            raise BitstreamError(f"header field {name!r} missing or not an integer")
        if not lo <= v <= hi:
            raise BitstreamError(f"header field {name!r} = {v} out of range [{lo}, {hi}]")
        values[name] = v
    if values["pitch_levels"] == 1:
        raise BitstreamError("header field 'pitch_levels' = 1: must be 0 (no pitch) or at least 2")
    model = h.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= 128 or any(c not in "0123456789abcdef" for c in model):
        raise BitstreamError("header field 'model' missing or not a hex fingerprint")
    speaker = h.get("speaker")
    if speaker is not None and (not isinstance(speaker, str) or len(speaker) > 256):
        raise BitstreamError("header field 'speaker' must be null or a name of at most 256 characters")
    stats = {}
    for name in ("lf0_mean", "lf0_std"):
        v = h.get(name)
        if type(v) not in (int, float) or not math.isfinite(v):
            raise BitstreamError(f"header field {name!r} missing or not a finite number")
        stats[name] = v
    if values["n_samples"] > values["n_frames"] * values["hop"]:
        raise BitstreamError(f"header says {values['n_samples']} samples but {values['n_frames']} codes cover only "
                             f"{values['n_frames'] * values['hop']}")
    return Header(model=model, speaker=speaker, **values, **stats)


def pack(header: Header, codes: np.ndarray, pitch: np.ndarray | None = None) -> bytes:
    """Header + codes [n_frames] (+ pitch [n_frames // pitch_frames]) -> the bytes of a .vqs file."""
    codes = np.asarray(codes)
    h = _check_header(asdict(header))  # the writer obeys the same rules as the reader
    if codes.shape != (h.n_frames,):
        raise BitstreamError(f"header says {h.n_frames} codes, got an array of shape {codes.shape}")
    if codes.size and codes.max() >= h.codebook_size:
        raise BitstreamError(f"code {codes.max()} out of range for a codebook of {h.codebook_size}")
    if h.pitch_levels:
        pitch = np.asarray(pitch) if pitch is not None else None
        if pitch is None or pitch.shape != (h.n_pitch,):
            raise BitstreamError(f"header says {h.n_pitch} pitch symbols, got {None if pitch is None else pitch.shape}")
        if pitch.size and pitch.max() >= h.pitch_levels:
            raise BitstreamError(f"pitch symbol {pitch.max()} out of range for {h.pitch_levels} levels")
    elif pitch is not None:
        raise BitstreamError("pitch symbols given but the header says pitch_levels = 0")
    # Shortest float32 repr keeps the header small and reads back to the same float32.
    fields = asdict(h)
    for name in ("lf0_mean", "lf0_std"):
        fields[name] = float(np.format_float_positional(np.float32(fields[name]), unique=True, trim="-"))
    meta = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    body = _PREFIX.pack(MAGIC, VERSION, len(meta)) + meta + pack_bits(codes, h.code_bits)
    if h.pitch_levels:
        body += pack_bits(pitch, h.pitch_bits)
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes) -> tuple[Header, np.ndarray, np.ndarray | None]:
    """The bytes of a .vqs file -> (header, codes int64 [n_frames], pitch int64 [n_pitch] or None).

    Raises BitstreamError (and nothing else) for anything that is not a well-formed file."""
    data = bytes(data)
    if not data:
        raise BitstreamError("empty file")
    if data[:3] != MAGIC[: len(data[:3])]:
        raise BitstreamError("not a .vqs file (wrong magic bytes)")
    if len(data) < 4:
        raise BitstreamError(f"truncated: {len(data)} bytes")
    version = data[3]
    if version > VERSION:
        raise BitstreamError(f"file format version {version} is newer than this vqspeech understands "
                             f"(it reads version {VERSION}); upgrade vqspeech")
    if version != VERSION:
        raise BitstreamError(f"unknown file format version {version}")
    if len(data) < _PREFIX.size + _CRC.size:
        raise BitstreamError(f"truncated: {len(data)} bytes")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupted or truncated")
    _, _, meta_len = _PREFIX.unpack_from(body)
    if _PREFIX.size + meta_len > len(body):
        raise BitstreamError(f"header length {meta_len} runs past the end of the file")
    try:
        meta = json.loads(body[_PREFIX.size : _PREFIX.size + meta_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BitstreamError(f"header is not valid JSON ({type(e).__name__})") from None
    h = _check_header(meta)
    payload = body[_PREFIX.size + meta_len :]
    if len(payload) != h.payload_bytes:
        raise BitstreamError(f"payload is {len(payload)} bytes, the header implies {h.payload_bytes}")
    n_code_bytes = -(-h.n_frames * h.code_bits // 8)
    codes = unpack_bits(payload[:n_code_bytes], h.code_bits, h.n_frames)
    if codes.size and codes.max() >= h.codebook_size:
        raise BitstreamError(f"code {codes.max()} out of range for a codebook of {h.codebook_size}")
    pitch = None
    if h.pitch_levels:
        pitch = unpack_bits(payload[n_code_bytes:], h.pitch_bits, h.n_pitch)
        if pitch.size and pitch.max() >= h.pitch_levels:
            raise BitstreamError(f"pitch symbol {pitch.max()} out of range for {h.pitch_levels} levels")
    return h, codes, pitch
