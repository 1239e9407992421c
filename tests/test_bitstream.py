"""The .vqs format: exact round trips, and refusal (BitstreamError, nothing else) of anything damaged."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqspeech.codec.bitstream import (MAGIC, VERSION, BitstreamError, Header, bits_for, pack, pack_bits, unpack,
                                      unpack_bits)

# A few thousand examples in all, a few seconds; no example database written into the repository.
FAST = dict(deadline=None, database=None)


def example(K: int, n: int, levels: int, pitch_frames: int = 4, seed: int = 0, speaker: str | None = "alice"):
    """A random but valid (header, codes, pitch); the largest symbols always occur when there is room."""
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
                    speaker=speaker, lf0_mean=float(rng.normal(5.0, 0.5)), lf0_std=float(rng.uniform(0.05, 0.5)))
    return header, codes, pitch


def forge(meta: bytes | dict, payload: bytes = b"", version: int = VERSION) -> bytes:
    """A file with a valid checksum around an arbitrary header: reaches the checks behind the CRC."""
    if isinstance(meta, dict):
        meta = json.dumps(meta).encode()
    body = MAGIC + bytes([version]) + struct.pack(">I", len(meta)) + meta + payload
    return body + struct.pack(">I", zlib.crc32(body))


files = st.builds(example, K=st.integers(2, 4096), n=st.integers(0, 600), levels=st.sampled_from([0, 2, 3, 32, 256]),
                  pitch_frames=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
                  speaker=st.sampled_from([None, "alice", "Zoë ☃"]))


# --- round trips -------------------------------------------------------------------------------------------

def test_pack_bits_known_layout():
    # 3-bit symbols 1, 2, 3 -> 001 010 011 -> 00101001 1(0000000): MSB first, zero padded.
    assert pack_bits(np.array([1, 2, 3]), 3) == bytes([0b00101001, 0b10000000])
    assert pack_bits(np.array([4095, 0]), 12) == bytes([0xFF, 0xF0, 0x00])
    assert pack_bits(np.array([], dtype=np.int64), 7) == b""
    assert bits_for(2) == 1 and bits_for(512) == 9 and bits_for(513) == 10 and bits_for(4096) == 12


@settings(max_examples=600, **FAST)
@given(K=st.integers(2, 4096), n=st.integers(0, 5000), pitch=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_round_trip(K, n, pitch, seed):
    header, codes, pitch_symbols = example(K, n, 32 if pitch else 0, seed=seed)
    data = pack(header, codes, pitch_symbols)
    h, c, p = unpack(data)
    assert h == header
    np.testing.assert_array_equal(c, codes)
    if pitch:
        np.testing.assert_array_equal(p, pitch_symbols)
    else:
        assert p is None
    # Packed at exactly ceil(log2 K) bits per code: the file is header + ceil(n * bits / 8) + pitch + CRC.
    meta_len = struct.unpack(">I", data[4:8])[0]
    pitch_bytes = -(-(n // 4) * 5 // 8) if pitch else 0
    assert len(data) == 8 + meta_len + -(-n * bits_for(K) // 8) + pitch_bytes + 4


@settings(max_examples=300, **FAST)
@given(bits=st.integers(1, 24), values=st.lists(st.integers(0, 2**24 - 1), max_size=300))
def test_bits_round_trip(bits, values):
    v = np.array(values, dtype=np.int64) % (1 << bits)
    data = pack_bits(v, bits)
    assert len(data) == -(-len(v) * bits // 8)
    np.testing.assert_array_equal(unpack_bits(data, bits, len(v)), v)


def test_lf0_statistics_travel_as_float32():
    header, codes, pitch = example(512, 40, 32)
    header.lf0_mean, header.lf0_std = 5.123456789012, 0.2222222222
    h, _, _ = unpack(pack(header, codes, pitch))
    assert h.lf0_mean == float(np.float32(5.123456789012)) and h.lf0_std == float(np.float32(0.2222222222))


def test_bitrate_counts_codes_and_pitch():
    header, _, _ = example(512, 100, 32)
    assert header.bitrate == pytest.approx(16000 / 64 * 9 + 16000 / 256 * 5)  # 2562.5 bit/s


# --- damage ---------------------------------------------------------------------------------------------------

def assert_refused(data: bytes, match: str | None = None) -> str:
    with pytest.raises(BitstreamError, match=match) as info:  # any other exception type fails the test
        unpack(data)
    message = str(info.value)
    assert message and "\n" not in message
    return message


@settings(max_examples=1500, **FAST)
@given(f=files, where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_any_single_byte_corruption_is_refused(f, where, flip):
    data = bytearray(pack(*f))
    i = int(where * len(data))
    data[i] ^= flip
    assert_refused(bytes(data))


@settings(max_examples=500, **FAST)
@given(f=files, where=st.floats(0, 1, exclude_max=True), extra=st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_files_are_refused(f, where, extra):
    data = pack(*f)
    assert_refused(data[: int(where * len(data))])
    assert_refused(data + extra)


@settings(max_examples=800, **FAST)
@given(f=files, where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255), cut=st.integers(0, 6))
def test_damage_behind_a_valid_checksum_never_escapes_as_another_error(f, where, flip, cut):
    """Damage the body and recompute the CRC (a buggy writer, or an attacker): the parser must still
    answer with a well-formed result or a BitstreamError, never an IndexError, KeyError, MemoryError..."""
    body = bytearray(pack(*f)[:-4])
    body[8 + int(where * (len(body) - 8))] ^= flip
    body = bytes(body[: len(body) - cut])
    data = body + struct.pack(">I", zlib.crc32(body))
    try:
        h, codes, pitch = unpack(data)
    except BitstreamError as e:
        assert "\n" not in str(e)
        return
    assert codes.shape == (h.n_frames,) and (codes.size == 0 or codes.max() < h.codebook_size)
    assert (pitch is None) == (h.pitch_levels == 0)


def test_random_bytes_are_refused():
    rng = np.random.default_rng(0)
    for n in range(0, 64):
        assert_refused(rng.integers(0, 256, n, dtype=np.uint8).tobytes())


def test_named_problems():
    header, codes, pitch = example(32, 20, 32)
    good = pack(header, codes, pitch)
    assert_refused(b"", "empty")
    assert_refused(b"RIFF" + good[4:], "not a .vqs file")
    assert_refused(good[:2], "truncated")
    assert_refused(good[:-1], "checksum")
    newer = bytearray(good)
    newer[3] = 3
    assert_refused(bytes(newer), "version 3 is newer than this vqspeech understands")
    assert_refused(forge(b"{}", version=0), "unknown file format version 0")


def test_header_checks_behind_the_checksum():
    header, codes, pitch = example(32, 20, 32)
    meta = json.loads(pack(header, codes, pitch)[8:].split(b"}", 1)[0] + b"}")
    payload = pack_bits(codes, 5) + pack_bits(pitch, 5)
    assert unpack(forge(meta, payload))[0] == header  # the forger itself is sound
    assert_refused(forge(b"[1, 2]", payload), "not a JSON object")
    assert_refused(forge(b"{not json", payload), "not valid JSON")
    assert_refused(forge(b"\xff\xfe", payload), "not valid JSON")
    assert_refused(forge({**meta, "codebook_size": True}, payload), "codebook_size")
    assert_refused(forge({k: v for k, v in meta.items() if k != "hop"}, payload), "hop")
    assert_refused(forge({**meta, "lf0_mean": float("nan")}, payload), "lf0_mean")
    assert_refused(forge({**meta, "n_samples": 20 * 64 + 1}, payload), "cover only")
    assert_refused(forge({**meta, "model": "not hex"}, payload), "fingerprint")
    assert_refused(forge({**meta, "n_frames": 10**12}, payload), "payload is")
    assert_refused(forge(meta, payload[:-1]), "payload is")
    data = forge(meta, payload)
    assert_refused(data[:4] + struct.pack(">I", 10**6) + data[8:-4] + data[-4:], "checksum")
    lying = forge(meta, payload)[:-4]
    lying = lying[:4] + struct.pack(">I", 10**6) + lying[8:]
    assert_refused(lying + struct.pack(">I", zlib.crc32(lying)), "runs past the end")
    # A code >= K fits in ceil(log2 K) bits when K is not a power of two: refused, not passed on.
    big = pack_bits(np.full(20, 31), 5) + pack_bits(pitch, 5)
    assert_refused(forge({**meta, "codebook_size": 20}, big), "out of range")
    assert_refused(forge(meta, payload[:-1] + bytes([payload[-1] | 1])), "padding")


def test_writer_refuses_inconsistent_input():
    header, codes, pitch = example(32, 20, 32)
    with pytest.raises(BitstreamError, match="out of range"):
        pack(header, np.full(20, 32), pitch)
    with pytest.raises(BitstreamError, match="20 codes"):
        pack(header, codes[:-1], pitch)
    with pytest.raises(BitstreamError, match="pitch"):
        pack(header, codes, None)
