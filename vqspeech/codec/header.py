"""The .vqs header: its fields (Header), and the rules every header obeys, whichever version wrote it (check_header).

bitstream.py lays headers out in bytes and reads them back; everything a header may hold is decided here, so the
writer and every reader refuse the same things.
"""

from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from vqspeech.codec.packing import MAX_BITS, BitstreamError, bits_for

PLAIN_VERSION = 3  # the version of plainly packed files
PRIOR_ID_BYTES = 4
FINGERPRINT_BYTES = 8  # of the model fingerprint kept in a file (v1 files may hold more; compared on these)
MAX_SPEAKER_BYTES = 255  # a name's UTF-8 length fits the uint8 before it
MAX_VOICE_DIM = 255  # the voice vector's length fits a uint8
MAX_VOICE_SCALE = 1.0  # a mapped d-vector's entries are O(0.1-1): an int8 step above 1 (|v| > 127) is corrupt
_VOICE_SCALE = struct.Struct(">e")  # the voice's float16 step (packing.voice_to_int8)
_F32_MAX = float(np.finfo(np.float32).max)
# Log-F0 statistics a real recording can have: a mean of log(1 Hz) to log(22 kHz), a spread below 4 (a factor of
# e**4 = 55 per standard deviation; speech is ~0.1-0.3).
_LF0_RANGES = {"lf0_mean": (0.0, 10.0), "lf0_std": (0.0, 4.0)}


def _f32(x: float) -> float:
    """Round to float32: the log-F0 statistics travel as float32 (7 significant digits are plenty)."""
    return float(np.float32(x))


@dataclass
class Header:
    """Everything a decoder needs besides the model; `model` names the model whose codebook made the codes.

    A header read from a file holds what the file holds: the fingerprint cut to FINGERPRINT_BYTES, the
    log-F0 statistics as float32, and the format version it was written in."""

    model: str  # hex model fingerprint (vqspeech.models.vqvae.model_fingerprint); files keep its first 8 bytes
    sample_rate: int
    hop: int  # samples per code
    codebook_size: int  # K
    pitch_levels: int  # 0: no pitch side information
    pitch_frames: int  # codes per pitch symbol
    n_frames: int  # number of codes
    n_samples: int  # audio length the codes stand for (<= n_frames * hop); v2 stores n_frames * hop - n_samples
    speaker: str | None = None  # the recorded speaker's name, if known (non-empty, at most 255 bytes of UTF-8)
    lf0_mean: float = 0.0  # utterance log-F0 statistics (float32 precision)
    lf0_std: float = 0.0
    voice: tuple[float, ...] | None = None  # the speaker's voice vector as the file holds it (see quantise_voice)
    prior: str | None = None  # hex id of the prior the payload is range-coded under (version 4); None: packed
    top_codebook_size: int = 0  # codes at two rates (version 5): the top codes' K, one top code per pitch frame
    version: int = field(default=PLAIN_VERSION, compare=False)  # the file's format version (pack: 3, pack_coded: 4)

    def __post_init__(self):
        self.lf0_mean, self.lf0_std = _f32(self.lf0_mean), _f32(self.lf0_std)
        if self.voice is not None:
            self.voice = tuple(float(v) for v in np.asarray(self.voice, np.float64).reshape(-1))

    @property
    def voice_bytes(self) -> int:
        """What the voice vector costs in the file (the length byte included)."""
        return 1 + (_VOICE_SCALE.size + len(self.voice) if self.voice else 0)

    @property
    def code_bits(self) -> int:
        return bits_for(self.codebook_size)

    @property
    def pitch_bits(self) -> int:
        return bits_for(self.pitch_levels) if self.pitch_levels else 0

    @property
    def top_bits(self) -> int:
        return bits_for(self.top_codebook_size) if self.top_codebook_size else 0

    @property
    def n_top(self) -> int:
        return self.n_frames // self.pitch_frames if self.top_codebook_size else 0

    @property
    def n_pitch(self) -> int:
        return self.n_frames // self.pitch_frames if self.pitch_levels else 0

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def payload_bytes(self) -> int:
        return sum(-(-n * bits // 8) for n, bits in ((self.n_frames, self.code_bits), (self.n_top, self.top_bits),
                                                      (self.n_pitch, self.pitch_bits)))

    @property
    def bitrate(self) -> float:
        """Nominal bits per second of codes plus pitch, without headers or byte padding."""
        frames_per_s = self.sample_rate / self.hop
        return frames_per_s * self.code_bits + frames_per_s / self.pitch_frames * (self.top_bits + self.pitch_bits)


def short_fingerprint(model: str) -> str:
    """A hex fingerprint cut to what a file keeps: compare a model with a file's header through this."""
    return model[: 2 * FINGERPRINT_BYTES]


# field -> (minimum, maximum), in the order v2 stores them. Ranges keep a corrupt header from asking for
# absurd allocations before the payload-size check catches it.
INT_FIELDS = {
    "sample_rate": (1, 10_000_000),
    "hop": (1, 1 << 20),
    "codebook_size": (2, 1 << MAX_BITS),
    "pitch_levels": (0, 1 << MAX_BITS),
    "pitch_frames": (1, 1 << 20),
    "n_frames": (0, 1 << 40),
    "n_samples": (0, 1 << 50),
}


def check_int(name: str, v) -> int:
    if type(v) is not int:  # bool is an int subclass: refuse it too
        raise BitstreamError(f"header field {name!r} missing or not an integer")
    lo, hi = INT_FIELDS[name]
    if not lo <= v <= hi:
        raise BitstreamError(f"header field {name!r} = {v} out of range [{lo}, {hi}]")
    return v


def _check_speaker(speaker) -> None:
    if speaker is None:
        return
    if not isinstance(speaker, str):
        raise BitstreamError("header field 'speaker' must be null or a name")
    try:
        size = len(speaker.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON can spell
        raise BitstreamError("header field 'speaker' is not valid Unicode") from None
    if not 1 <= size <= MAX_SPEAKER_BYTES:
        raise BitstreamError(f"header field 'speaker' must be 1 to {MAX_SPEAKER_BYTES} bytes of UTF-8, got {size}")
    if any(unicodedata.category(c) == "Cc" for c in speaker):  # a newline would break one-line messages and `info`
        raise BitstreamError("header field 'speaker' contains control characters")


def check_header(h: dict, version: int = PLAIN_VERSION) -> Header:
    """A dict of header fields (from JSON, from the v2 fields, or asdict of a Header to write) -> a valid Header."""
    if not isinstance(h, dict):
        raise BitstreamError("header is not a JSON object")
    values = {name: check_int(name, h.get(name)) for name in INT_FIELDS}
    if values["pitch_levels"] == 1:
        raise BitstreamError("header field 'pitch_levels' = 1: must be 0 (no pitch) or at least 2")
    model = h.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= 128 or any(c not in "0123456789abcdef" for c in model):
        raise BitstreamError("header field 'model' missing or not a hex fingerprint")
    speaker = h.get("speaker")
    _check_speaker(speaker)
    stats = {}
    for name in ("lf0_mean", "lf0_std"):
        v = h.get(name)
        if type(v) not in (int, float) or not abs(v) <= _F32_MAX:  # NaN fails too
            raise BitstreamError(f"header field {name!r} missing or not a finite float32")
        lo, hi = _LF0_RANGES[name]
        if not lo <= v <= hi:  # a valid CRC over an absurd value would decode to full-scale noise
            raise BitstreamError(f"header field {name!r} = {v:g} out of range [{lo:g}, {hi:g}]")
        stats[name] = v
    if values["n_samples"] > values["n_frames"] * values["hop"]:
        raise BitstreamError(f"header says {values['n_samples']} samples but {values['n_frames']} codes cover only "
                             f"{values['n_frames'] * values['hop']}")
    voice = h.get("voice")
    if voice is not None:
        v = np.asarray(voice, np.float64).reshape(-1)
        if not 1 <= v.size <= MAX_VOICE_DIM:
            raise BitstreamError(f"header field 'voice' has {v.size} values (1 to {MAX_VOICE_DIM})")
        if not np.isfinite(v).all() or np.abs(v).max() > 127 * MAX_VOICE_SCALE:
            raise BitstreamError(f"header field 'voice' holds values beyond +-{127 * MAX_VOICE_SCALE:g}")
    prior = h.get("prior")
    if prior is not None and (not isinstance(prior, str) or len(prior) != 2 * PRIOR_ID_BYTES
                              or any(c not in "0123456789abcdef" for c in prior)):
        raise BitstreamError(f"header field 'prior' is not a {PRIOR_ID_BYTES}-byte hex id")
    top = h.get("top_codebook_size", 0)
    if type(top) is not int or not (top == 0 or 2 <= top <= 1 << MAX_BITS):
        raise BitstreamError(f"header field 'top_codebook_size' = {top!r}: must be 0 (codes at one rate) or 2 to {1 << MAX_BITS}")
    if top and values["n_frames"] % values["pitch_frames"]:
        raise BitstreamError(f"header says {values['n_frames']} codes, not a whole number of top codes "
                             f"(one per {values['pitch_frames']})")
    if top and prior is not None:
        raise BitstreamError("codes at two rates are packed, never range-coded: a header cannot name both")
    return Header(model=short_fingerprint(model), speaker=speaker, **values, **stats, voice=voice, prior=prior,
                  top_codebook_size=top, version=version)
