"""The .vqs file format: one encoded utterance, self-describing, checksummed.

Version 5 (written by a model whose codes come at two rates, models/two_rate.py; always packed) is version 3's
header, then varint top_codebook_size (K_top >= 2), and a payload of the codes, then the top codes (one per pitch
frame, ceil(log2 K_top) bits each, MSB first, zero-padded to a byte), then the pitch symbols.

Version 4 (written when the model has a prior over its codes) is version 3's header, then the prior's id, then
the codes and pitch symbols range-coded under the prior (vqspeech/codec/entropy.py) instead of packed:

               4 bytes prior id (entropy.Prior.id: decoding needs that very prior), then the range coder's
               32-bit words, little-endian, up to the CRC

Version 3 (written with --no-prior, or by a model without a prior) is version 2 with the speaker's voice vector after the name (models whose decoder reads
the voice from a vector, config voice="vector"; a file of a table-voice model has D = 0):

               uint8 D (0: no voice vector), and if D > 0: float16 scale s, then D int8 values q
               (the vector is q * s, s = max |v| / 127): D + 3 bytes once per file, 67 for D = 64

Version 2 layout (read; integers big-endian, "varint" = unsigned LEB128, 7 bits a byte, least
significant group first, shortest form only):

    offset 0   b"VQS"                       magic
    offset 3   uint8 version = 2             refused if not one we read
    offset 4   8 bytes                       model fingerprint (the first 8 bytes of model_fingerprint)
    offset 12  float32 lf0_mean, lf0_std     utterance log-F0 statistics
    offset 20  varints sample_rate, hop, codebook_size, pitch_levels, pitch_frames, n_frames,
               and the tail padding n_frames * hop - n_samples
               uint8 L, then L bytes of UTF-8  the speaker's name (L = 0: not recorded)
    then       codes, ceil(log2 K) bits each, most significant bit first, zero-padded to a byte
               then pitch symbols, ceil(log2 pitch_levels) bits each, likewise (absent without pitch)
    end - 4    uint32 CRC32 (zlib) of everything before it

A typical header (16 kHz, hop 64, K 512, pitch) costs 35 bytes with the CRC, plus the name's length.

Version 1 (read, no longer written) had a JSON header instead of offsets 4 to the payload:

    offset 4   uint32 header length H, then H bytes of UTF-8 JSON: an object with the Header's fields
               (unknown keys ignored); about 215 bytes, 0.7 kbit/s on a 2.5 s utterance

Parsing is defensive: every length is checked against the file size before it is used, the JSON is
parsed as data (never eval, never pickle), every field is type- and range-checked, and every
problem raises `BitstreamError` with a one-line message. Nothing else escapes `unpack`.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np

# The header's fields and rules live in header.py, how symbols and the voice vector become bytes in packing.py;
# both re-exported here with the format's other names.
from vqspeech.codec.header import (_VOICE_SCALE, FINGERPRINT_BYTES, INT_FIELDS, MAX_SPEAKER_BYTES, MAX_VOICE_DIM,  # noqa: F401
                                   MAX_VOICE_SCALE, PLAIN_VERSION, PRIOR_ID_BYTES, Header, check_header, check_int,
                                   short_fingerprint)
from vqspeech.codec.packing import (MAX_BITS, BitstreamError, bits_for, pack_bits, quantise_voice,  # noqa: F401
                                    unpack_bits, voice_to_int8)

MAGIC = b"VQS"
VQS_EXTENSION = ".vqs"  # the name an encoded file ends in
VERSION = 5  # the newest version we write (codes at two rates); we read 1 to 5
TWO_RATE_VERSION = 5
_V1_PREFIX = struct.Struct(">3sBI")  # magic, version, JSON header length
_V2_FIXED = struct.Struct(">3sB8sff")  # magic, version, fingerprint, lf0_mean, lf0_std
_CRC = struct.Struct(">I")
_MAX_VARINT = 8  # bytes: 56 bits, above every range below


# --- version 2: fixed fields, varints, length-prefixed name ---------------------------------------------

def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, least significant first, high bit set on all but the last."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Fields:
    """Reads the v2 header's variable part in order; running past the end of the file is a BitstreamError."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"header runs past the end of the file (reading {what})")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def varint(self, what: str) -> int:
        value = 0
        for i in range(_MAX_VARINT):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << 7 * i
            if not byte & 0x80:
                if byte == 0 and i:  # a redundant zero group: one value, one spelling
                    raise BitstreamError(f"header field {what!r} is not a shortest varint")
                return value
        raise BitstreamError(f"header field {what!r} is a varint longer than {_MAX_VARINT} bytes")


def _write_v3(h: Header) -> bytes:
    if len(h.model) != 2 * FINGERPRINT_BYTES:
        raise BitstreamError(f"model fingerprint {h.model!r} is shorter than the {FINGERPRINT_BYTES} bytes a file keeps")
    speaker = h.speaker.encode("utf-8") if h.speaker is not None else b""
    ints = (h.sample_rate, h.hop, h.codebook_size, h.pitch_levels, h.pitch_frames, h.n_frames, h.n_frames * h.hop - h.n_samples)
    voice = b"\x00"
    if h.voice:
        scale, q = voice_to_int8(h.voice)
        voice = bytes([len(q)]) + _VOICE_SCALE.pack(scale) + q.tobytes()
    version, extra = (4, bytes.fromhex(h.prior)) if h.prior else (3, b"")
    if h.top_codebook_size:
        version, extra = TWO_RATE_VERSION, _varint(h.top_codebook_size)
    return (_V2_FIXED.pack(MAGIC, version, bytes.fromhex(h.model), h.lf0_mean, h.lf0_std)
            + b"".join(map(_varint, ints)) + bytes([len(speaker)]) + speaker + voice + extra)


def _read_voice(f: "_Fields") -> tuple[float, ...] | None:
    n = f.take(1, "voice vector length")[0]
    if not n:
        return None
    (scale,) = _VOICE_SCALE.unpack(f.take(_VOICE_SCALE.size, "voice scale"))
    q = np.frombuffer(f.take(n, "voice vector"), np.int8)
    if not 0 <= scale <= MAX_VOICE_SCALE:  # NaN fails too
        raise BitstreamError(f"header field 'voice' scale {scale} out of range [0, {MAX_VOICE_SCALE:g}]")
    return tuple((q.astype(np.float32) * np.float32(scale)).tolist())


def _read_v3(body: bytes) -> tuple[Header, int]:
    """body (the file less its CRC) -> (header, offset of the payload): v2's fields, then the voice."""
    return _read_v2(body, version=3)


def _read_v4(body: bytes) -> tuple[Header, int]:
    """v3's header, then the prior's id."""
    return _read_v2(body, version=4)


def _read_v2(body: bytes, version: int = 2) -> tuple[Header, int]:
    """body (the file less its CRC, at least _V2_FIXED.size bytes) -> (header, offset of the payload)."""
    _, _, model, lf0_mean, lf0_std = _V2_FIXED.unpack_from(body)
    f = _Fields(body, _V2_FIXED.size)
    values = {name: check_int(name, f.varint(name)) for name in INT_FIELDS if name != "n_samples"}
    padding = f.varint("tail padding")
    covered = values["n_frames"] * values["hop"]
    if padding > covered:
        raise BitstreamError(f"header says {padding} samples of tail padding but {values['n_frames']} codes cover only {covered}")
    n = f.take(1, "speaker name length")[0]
    try:
        speaker = f.take(n, "speaker name").decode("utf-8") if n else None
    except UnicodeDecodeError:
        raise BitstreamError("header field 'speaker' is not valid UTF-8") from None
    voice = _read_voice(f) if version >= 3 else None
    prior = f.take(PRIOR_ID_BYTES, "prior id").hex() if version == 4 else None
    top = f.varint("top_codebook_size") if version == TWO_RATE_VERSION else 0
    if version == TWO_RATE_VERSION and top < 2:
        raise BitstreamError(f"a version {version} file with top_codebook_size = {top} (codes at two rates need at least 2)")
    fields = dict(values, n_samples=covered - padding, model=model.hex(), speaker=speaker, lf0_mean=lf0_mean, lf0_std=lf0_std,
                  voice=voice, prior=prior, top_codebook_size=top)
    return check_header(fields, version=version), f.pos


# --- version 1: JSON (read only) ------------------------------------------------------------------------

def _read_v1(body: bytes) -> tuple[Header, int]:
    """body (the file less its CRC, at least _V1_PREFIX.size bytes) -> (header, offset of the payload)."""
    _, _, meta_len = _V1_PREFIX.unpack_from(body)
    if _V1_PREFIX.size + meta_len > len(body):
        raise BitstreamError(f"header length {meta_len} runs past the end of the file")
    try:
        meta = json.loads(body[_V1_PREFIX.size : _V1_PREFIX.size + meta_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BitstreamError(f"header is not valid JSON ({type(e).__name__})") from None
    return check_header(meta, version=1), _V1_PREFIX.size + meta_len


_READERS = {1: (_V1_PREFIX.size, _read_v1), 2: (_V2_FIXED.size, _read_v2), 3: (_V2_FIXED.size, _read_v3),
            4: (_V2_FIXED.size, _read_v4), 5: (_V2_FIXED.size, lambda body: _read_v2(body, version=5))}
# version -> (smallest header, reader)


# --- files ------------------------------------------------------------------------------------------------

def pack(header: Header, codes: np.ndarray, pitch: np.ndarray | None = None, top: np.ndarray | None = None) -> bytes:
    """Header + codes [n_frames] (+ pitch [n_frames // pitch_frames]) -> the bytes of a version 3 .vqs file; with
    top codes [n_frames // pitch_frames] (header.top_codebook_size > 0), of a version 5 one."""
    codes = np.asarray(codes)
    h = check_header({**asdict(header), "prior": None})  # the writer obeys the same rules as the reader
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
    if (top is None) != (h.top_codebook_size == 0):
        raise BitstreamError("top codes need a header with top_codebook_size, and such a header needs them")
    body = _write_v3(h) + pack_bits(codes, h.code_bits)
    if top is not None:
        top = np.asarray(top)
        if top.shape != (h.n_top,) or (top.size and top.max() >= h.top_codebook_size):
            raise BitstreamError(f"header says {h.n_top} top codes below {h.top_codebook_size}, got shape {top.shape}")
        body += pack_bits(top, h.top_bits)
    if h.pitch_levels:
        body += pack_bits(pitch, h.pitch_bits)
    return body + _CRC.pack(zlib.crc32(body))


def pack_coded(header: Header, words: np.ndarray) -> bytes:
    """Header (its `prior` set) + the range coder's uint32 words -> the bytes of a version 4 .vqs file."""
    if not header.prior:
        raise BitstreamError("a range-coded file needs the id of its prior (header.prior)")
    h = check_header(asdict(header), version=4)
    body = _write_v3(h) + np.asarray(words, "<u4").tobytes()
    return body + _CRC.pack(zlib.crc32(body))


@dataclass
class Parsed:
    """A .vqs file as read: packed files give codes and pitch, range-coded ones (version 4) the coder's words."""

    header: Header
    codes: np.ndarray | None  # int64 [n_frames]
    pitch: np.ndarray | None  # int64 [n_pitch], or None without pitch
    words: np.ndarray | None = None  # uint32 [W] (version 4): codes and pitch under the prior header.prior
    top: np.ndarray | None = None  # int64 [n_frames // pitch_frames] (version 5): the top codes


def unpack(data: bytes) -> tuple[Header, np.ndarray, np.ndarray | None]:
    """The bytes of a packed .vqs file (version 1, 2 or 3) -> (header, codes int64 [n_frames], pitch int64 [n_pitch]
    or None). A range-coded file (version 4) needs its prior: read it with `read` and codec.api."""
    parsed = read(data)
    if parsed.top is not None:  # three arrays, not two: returning two would lose the top codes without a word
        raise BitstreamError("its codes come at two rates (version 5): read it with `read`, which returns the top codes too")
    if parsed.words is not None:
        raise BitstreamError(f"its codes are range-coded under prior {parsed.header.prior}: decode it with the model's prior")
    return parsed.header, parsed.codes, parsed.pitch


def read(data: bytes) -> Parsed:
    """The bytes of a .vqs file (any version we read) -> Parsed.

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
                             f"(it reads versions up to {VERSION}); upgrade vqspeech")
    if version not in _READERS:
        raise BitstreamError(f"unknown file format version {version}")
    smallest, read_header = _READERS[version]
    if len(data) < smallest + _CRC.size:
        raise BitstreamError(f"truncated: {len(data)} bytes")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupted or truncated")
    h, offset = read_header(body)
    payload = body[offset:]
    if version == 4:
        if len(payload) % 4:
            raise BitstreamError(f"range-coded payload of {len(payload)} bytes is not a whole number of 32-bit words")
        if h.n_frames and not payload:
            raise BitstreamError(f"{h.n_frames} codes but an empty payload")
        return Parsed(h, None, None, np.frombuffer(payload, "<u4").astype(np.uint32))
    if len(payload) != h.payload_bytes:
        raise BitstreamError(f"payload is {len(payload)} bytes, the header implies {h.payload_bytes}")
    n_code_bytes = -(-h.n_frames * h.code_bits // 8)
    codes = unpack_bits(payload[:n_code_bytes], h.code_bits, h.n_frames)
    if codes.size and codes.max() >= h.codebook_size:
        raise BitstreamError(f"code {codes.max()} out of range for a codebook of {h.codebook_size}")
    pitch, top, at = None, None, n_code_bytes
    if h.top_codebook_size:
        top_bytes = -(-h.n_top * h.top_bits // 8)
        top = unpack_bits(payload[at : at + top_bytes], h.top_bits, h.n_top)
        if top.size and top.max() >= h.top_codebook_size:
            raise BitstreamError(f"top code {top.max()} out of range for a top codebook of {h.top_codebook_size}")
        at += top_bytes
    if h.pitch_levels:
        pitch = unpack_bits(payload[at:], h.pitch_bits, h.n_pitch)
        if pitch.size and pitch.max() >= h.pitch_levels:
            raise BitstreamError(f"pitch symbol {pitch.max()} out of range for {h.pitch_levels} levels")
    return Parsed(h, codes, pitch, top=top)


def read_file(path) -> tuple[Parsed, int]:
    """A .vqs file -> (its Parsed contents, file size in bytes); BitstreamError naming the file. Needs neither
    torch nor a model (`vqspeech info` starts in a fraction of a second)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)  # look before reading everything: a large non-.vqs file is refused at once
        if not head.startswith(MAGIC[: len(head)]) or not head:
            raise BitstreamError(f"{path}: not a .vqs file (wrong magic bytes)" if head else f"{path}: empty file")
        data = head + f.read()
    try:
        parsed = read(data)
    except BitstreamError as e:
        raise BitstreamError(f"{path}: {e}") from None
    return parsed, len(data)
