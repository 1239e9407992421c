"""The .vqs format: exact round trips, and refusal (BitstreamError, nothing else) of anything damaged."""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vqs_forge import FAST, as_v1, as_v2, example, files, forge, forge_v1, leb128, v2_head, v3_head
from vqspeech.codec.bitstream import (FINGERPRINT_BYTES, PLAIN_VERSION as VERSION, BitstreamError, Header, bits_for, pack,
                                      pack_bits, quantise_voice, short_fingerprint, unpack, unpack_bits, voice_to_int8)

# --- round trips -------------------------------------------------------------------------------------------

def test_pack_bits_known_layout():
    # 3-bit symbols 1, 2, 3 -> 001 010 011 -> 00101001 1(0000000): MSB first, zero padded.
    assert pack_bits(np.array([1, 2, 3]), 3) == bytes([0b00101001, 0b10000000])
    assert pack_bits(np.array([4095, 0]), 12) == bytes([0xFF, 0xF0, 0x00])
    assert pack_bits(np.array([], dtype=np.int64), 7) == b""
    assert bits_for(2) == 1 and bits_for(512) == 9 and bits_for(513) == 10 and bits_for(4096) == 12


def test_v3_known_layout():
    header, codes, pitch = example(32, 20, 32, speaker="Zoë")
    data = pack(header, codes, pitch)
    assert data[:4] == b"VQS\x03" and data[4:12] == bytes.fromhex("0123456789abcdef")
    assert data[12:20] == struct.pack(">ff", header.lf0_mean, header.lf0_std)
    pad = 20 * 64 - header.n_samples
    assert data[20:29] == b"\x80\x7d" + b"\x40" + b"\x20" + b"\x20" + b"\x04" + b"\x14" + bytes([pad]) + b"\x04"
    assert data[29:33] == "Zoë".encode() and leb128(16000) == b"\x80\x7d" and leb128(300) == b"\xac\x02"
    assert data[33:34] == b"\x00"  # no voice vector
    assert data == forge(v3_head(header), pack_bits(codes, 5) + pack_bits(pitch, 5))
    voiced, codes, pitch = example(32, 20, 32, speaker="Zoë", voice_dim=64)
    data = pack(voiced, codes, pitch)
    assert data[33] == 64 and len(data) == len(pack(header, codes, pitch)) + 2 + 64
    assert data == forge(v3_head(voiced), pack_bits(codes, 5) + pack_bits(pitch, 5))


def test_version_2_files_still_read():
    header, codes, pitch = example(32, 20, 32, speaker="Zoë")
    h, c, p = unpack(as_v2(header, codes, pitch))
    assert h == header and h.version == 2 and h.voice is None
    np.testing.assert_array_equal(c, codes)
    np.testing.assert_array_equal(p, pitch)


@settings(max_examples=300, **FAST)
@given(values=st.lists(st.floats(-50, 50, allow_nan=False) | st.floats(-50, 50, allow_nan=False, width=32), min_size=1, max_size=255))
def test_voice_travels_as_int8_and_quantising_is_idempotent(values):
    once = quantise_voice(np.array(values))
    np.testing.assert_array_equal(quantise_voice(once), once)  # what encode decodes from equals what the file holds
    scale, q = voice_to_int8(values)
    assert np.abs(once - np.asarray(values)).max() <= scale / 2 * 1.01 + 1e-12
    header, codes, pitch = example(32, 8, 32)
    h = unpack(pack(replace(header, voice=tuple(once)), codes, pitch))[0]
    np.testing.assert_allclose(h.voice, once, rtol=0, atol=1e-6)


@settings(max_examples=600, **FAST)
@given(K=st.integers(2, 4096), n=st.integers(0, 5000), pitch=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_round_trip(K, n, pitch, seed):
    header, codes, pitch_symbols = example(K, n, 32 if pitch else 0, seed=seed)
    data = pack(header, codes, pitch_symbols)
    h, c, p = unpack(data)
    assert h == header and h.version == VERSION == 3
    np.testing.assert_array_equal(c, codes)
    if pitch:
        np.testing.assert_array_equal(p, pitch_symbols)
    else:
        assert p is None
    # Packed at exactly ceil(log2 K) bits per code: the file is header + ceil(n * bits / 8) + pitch + CRC.
    pitch_bytes = -(-(n // 4) * 5 // 8) if pitch else 0
    assert len(data) == 4 + len(v3_head(header)) + -(-n * bits_for(K) // 8) + pitch_bytes + 4


def typical(speaker: str | None, seconds: float = 2.5):
    """The shipped configuration (16 kHz, hop 64, K 512, 32 pitch levels every 4 codes) on `seconds` of audio."""
    n = round(seconds * 16000 / 64)
    header = Header(model="0123456789abcdef", sample_rate=16000, hop=64, codebook_size=512, pitch_levels=32, pitch_frames=4,
                    n_frames=n, n_samples=n * 64 - 37, speaker=speaker, lf0_mean=5.03, lf0_std=0.22)
    return header, np.zeros(n, np.int64), np.zeros(n // 4, np.int64)


def test_fixed_overhead_is_small():
    """magic + version + header + CRC: 36 bytes for a typical 2.5 s file (it was ~213 as JSON, version 1);
    a speaker's name adds its UTF-8 (its length byte is there already), a 64-value voice vector 66 bytes."""
    header, codes, pitch = typical(None)
    data = pack(header, codes, pitch)
    overhead = len(data) - header.payload_bytes
    assert overhead <= 36
    voiced = replace(header, voice=tuple(np.linspace(-1, 1, 64)))
    assert len(pack(voiced, codes, pitch)) - len(data) == 66 == voiced.voice_bytes - header.voice_bytes
    assert len(as_v1(header, codes, pitch)) - header.payload_bytes > 200  # what version 1 spent on the same
    for name in ("SF1", "p225", "Zoë ☃"):
        named = replace(header, speaker=name)
        assert len(pack(named, codes, pitch)) - named.payload_bytes == overhead + len(name.encode())
    # At 2.5 s the header now costs about 0.1 kbit/s on top of the payload's 2.57.
    assert len(data) * 8 / header.duration - header.payload_bytes * 8 / header.duration < 120


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


def test_a_long_fingerprint_is_kept_and_compared_cut():
    header, codes, pitch = example(32, 20, 32)
    full = "0123456789abcdef" + "f" * 48  # a whole sha256 in hex
    h, _, _ = unpack(pack(replace(header, model=full), codes, pitch))
    assert h.model == short_fingerprint(full) == "0123456789abcdef" and FINGERPRINT_BYTES == 8
    with pytest.raises(BitstreamError, match="shorter than the 8 bytes"):
        pack(replace(header, model="abcd"), codes, pitch)


def test_bitrate_counts_codes_and_pitch():
    header, _, _ = example(512, 100, 32)
    assert header.bitrate == pytest.approx(16000 / 64 * 9 + 16000 / 256 * 5)  # 2562.5 bit/s


# --- version 1 -----------------------------------------------------------------------------------------------

# Written by the version 1 writer (commit 4d2e2ff) for: 32-hex model 00112233445566778899aabbccddeeff, 16 kHz,
# hop 64, K 32, 4 pitch levels every 4 codes, codes [0 31 5 7 9 30 1 2], pitch [3 1], 500 samples, speaker Zoë,
# log-F0 5.25 / 0.125.
V1_FILE = bytes.fromhex(
    "56515301000000d07b226d6f64656c223a223030313132323333343435353636373738383939616162626363646465656666222c2273616d"
    "706c655f72617465223a31363030302c22686f70223a36342c22636f6465626f6f6b5f73697a65223a33322c2270697463685f6c6576656c"
    "73223a342c2270697463685f6672616d6573223a342c226e5f6672616d6573223a382c226e5f73616d706c6573223a3530302c2273706561"
    "6b6572223a225a6f5c7530306562222c226c66305f6d65616e223a352e32352c226c66305f737464223a302e3132357d07ca74f822d0a56b"
    "dc85")


def test_version_1_files_still_read():
    h, codes, pitch = unpack(V1_FILE)
    assert h == Header(model="0011223344556677", sample_rate=16000, hop=64, codebook_size=32, pitch_levels=4, pitch_frames=4,
                       n_frames=8, n_samples=500, speaker="Zoë", lf0_mean=5.25, lf0_std=0.125)
    assert h.version == 1  # and the fingerprint cut as a v2 file cuts it, so both compare alike
    assert codes.tolist() == [0, 31, 5, 7, 9, 30, 1, 2] and pitch.tolist() == [3, 1]
    assert unpack(pack(h, codes, pitch))[0] == h  # re-written as version 3, nothing lost
    assert_refused(V1_FILE[:-1], "checksum")


@settings(max_examples=200, **FAST)
@given(f=st.builds(example, K=st.integers(2, 4096), n=st.integers(0, 300), levels=st.sampled_from([0, 2, 32]),
                   seed=st.integers(0, 2**32 - 1), speaker=st.sampled_from([None, "alice", "Zoë ☃"])))
def test_version_1_round_trip(f):
    header, codes, pitch = f
    h, c, p = unpack(as_v1(header, codes, pitch))
    assert h == header and h.version == 1
    np.testing.assert_array_equal(c, codes)
    assert (p is None) == (pitch is None) and (p is None or np.array_equal(p, pitch))


def test_version_1_header_checks_behind_the_checksum():
    header, codes, pitch = example(32, 20, 32)
    meta = {k: v for k, v in asdict(header).items() if k != "version"}
    payload = pack_bits(codes, 5) + pack_bits(pitch, 5)
    assert unpack(forge_v1(meta, payload))[0] == header  # the forger itself is sound
    assert_refused(forge_v1(b"[1, 2]", payload), "not a JSON object")
    assert_refused(forge_v1(b"{not json", payload), "not valid JSON")
    assert_refused(forge_v1(b"\xff\xfe", payload), "not valid JSON")
    assert_refused(forge_v1({**meta, "codebook_size": True}, payload), "codebook_size")
    assert_refused(forge_v1({k: v for k, v in meta.items() if k != "hop"}, payload), "hop")
    assert_refused(forge_v1({**meta, "lf0_mean": float("nan")}, payload), "lf0_mean")
    assert_refused(forge_v1({**meta, "lf0_std": 1e39}, payload), "lf0_std")  # finite, but not as float32
    assert_refused(forge_v1({**meta, "n_samples": 20 * 64 + 1}, payload), "cover only")
    assert_refused(forge_v1({**meta, "model": "not hex"}, payload), "fingerprint")
    assert_refused(forge_v1({**meta, "speaker": "\ud800"}, payload), "not valid Unicode")
    assert_refused(forge_v1({**meta, "speaker": "a\nb"}, payload), "control characters")
    assert_refused(forge_v1({**meta, "n_frames": 10**12}, payload), "payload is")
    assert_refused(forge_v1(meta, payload[:-1]), "payload is")
    lying = forge_v1(meta, payload)[:-4]
    lying = lying[:4] + struct.pack(">I", 10**6) + lying[8:]
    assert_refused(lying + struct.pack(">I", zlib.crc32(lying)), "runs past the end")
    assert_refused(forge_v1(b"{}")[:10], "truncated")


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
@given(f=files, where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255), cut=st.integers(0, 6),
       version=st.sampled_from([1, 2, 3]))
def test_damage_behind_a_valid_checksum_never_escapes_as_another_error(f, where, flip, cut, version):
    """Damage the body and recompute the CRC (a buggy writer, or an attacker): the parser must still
    answer with a well-formed result or a BitstreamError, never an IndexError, KeyError, MemoryError..."""
    if version < 3:
        f = (replace(f[0], voice=None), *f[1:])
    body = bytearray({1: as_v1, 2: as_v2, 3: pack}[version](*f)[:-4])
    start = 4 if version > 1 else 8  # past magic and version (and v1's length, whose damage another test covers)
    body[start + int(where * (len(body) - start))] ^= flip
    body = bytes(body[: len(body) - cut])
    data = body + struct.pack(">I", zlib.crc32(body))
    try:
        h, codes, pitch = unpack(data)
    except BitstreamError as e:
        assert "\n" not in str(e)
        return
    assert codes.shape == (h.n_frames,) and (codes.size == 0 or codes.max() < h.codebook_size)
    assert (pitch is None) == (h.pitch_levels == 0) and h.version == version
    assert h.speaker is None or (h.speaker and "\n" not in h.speaker)
    assert h.voice is None or (0 < len(h.voice) <= 255 and np.isfinite(h.voice).all() and np.abs(h.voice).max() <= 127)


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
    assert_refused(good[:23], "truncated")
    assert_refused(good[:-1], "checksum")
    newer = bytearray(good)
    newer[3] = 6
    assert_refused(bytes(newer), "version 6 is newer than this vqspeech understands")
    assert_refused(forge(b"{}" + bytes(30), version=0), "unknown file format version 0")


def test_header_checks_behind_the_checksum():
    header, codes, pitch = example(32, 20, 32)
    ints = (16000, 64, 32, 32, 4, 20, 20 * 64 - header.n_samples)
    lf0 = (header.lf0_mean, header.lf0_std)
    payload = pack_bits(codes, 5) + pack_bits(pitch, 5)

    def file(**changes):  # version 3: the v2 fields, then no voice
        spec = {"ints": ints, "speaker": b"alice", "lf0": lf0} | changes
        return forge(v2_head(**spec) + b"\x00", payload)

    def with_ints(**changes):
        names = ["sample_rate", "hop", "codebook_size", "pitch_levels", "pitch_frames", "n_frames", "padding"]
        return file(ints=tuple(changes.get(name, v) for name, v in zip(names, ints)))

    assert unpack(file())[0] == header  # the forger itself is sound
    assert_refused(with_ints(codebook_size=1), "'codebook_size' = 1 out of range")
    assert_refused(with_ints(codebook_size=(1 << 24) + 1), "codebook_size")
    assert_refused(with_ints(pitch_levels=1), "pitch_levels")
    assert_refused(with_ints(sample_rate=0), "sample_rate")
    assert_refused(with_ints(hop=0), "hop")
    assert_refused(with_ints(padding=20 * 64 + 1), "cover only")
    assert_refused(with_ints(n_frames=10**12), "payload is")
    assert_refused(with_ints(n_frames=1 << 41), "n_frames")
    assert_refused(with_ints(hop=1 << 20, n_frames=1 << 40), "n_samples")
    assert_refused(file(lf0=(float("nan"), lf0[1])), "lf0_mean")
    assert_refused(file(lf0=(lf0[0], float("inf"))), "lf0_std")
    assert_refused(file(speaker=b"\xff\xfe"), "not valid UTF-8")
    assert_refused(file(speaker=b"a\nb"), "control characters")
    head = v2_head(ints=ints, speaker=b"alice", lf0=lf0) + b"\x00"
    assert head[16:19] == b"\x80\x7d\x40"  # sample_rate 16000, hop 64
    assert_refused(forge(head[:18] + b"\xc0\x00" + head[19:], payload), "'hop' is not a shortest varint")
    assert_refused(forge(head[:18] + b"\xff" * 8 + b"\x00" + head[19:], payload), "'hop' is a varint longer than 8 bytes")
    assert_refused(forge(head[:-7] + b"\xff" + head[-6:], payload), "runs past the end of the file .reading speaker name")
    assert_refused(forge(head[:-4]), "runs past the end")
    # The voice vector: its length byte, scale and values are read as carefully as the rest.
    assert_refused(forge(head[:-1] + b"\x40", payload), "runs past the end of the file .reading voice")
    assert_refused(forge(head[:-1] + b"\x02" + struct.pack(">e", float("nan")) + b"\x01\x02", payload), "scale")
    assert_refused(forge(head[:-1] + b"\x02" + struct.pack(">e", 3.0) + b"\x01\x02", payload), "scale")
    assert unpack(forge(head[:-1] + b"\x02" + struct.pack(">e", 0.5) + b"\x01\xfe", payload))[0].voice == (0.5, -1.0)
    assert_refused(forge(head, payload[:-1]), "payload is")
    # A code >= K fits in ceil(log2 K) bits when K is not a power of two: refused, not passed on.
    big = pack_bits(np.full(20, 31), 5) + pack_bits(pitch, 5)
    assert_refused(forge(v2_head(ints=(16000, 64, 20, *ints[3:]), speaker=b"", lf0=lf0) + b"\x00", big), "out of range")
    assert_refused(forge(head, payload[:-1] + bytes([payload[-1] | 1])), "padding")


def test_writer_refuses_inconsistent_input():
    header, codes, pitch = example(32, 20, 32)
    with pytest.raises(BitstreamError, match="out of range"):
        pack(header, np.full(20, 32), pitch)
    with pytest.raises(BitstreamError, match="20 codes"):
        pack(header, codes[:-1], pitch)
    with pytest.raises(BitstreamError, match="pitch"):
        pack(header, codes, None)
    for name, problem in (("", "1 to 255 bytes"), ("é" * 128, "1 to 255 bytes"), ("a\tb", "control")):
        with pytest.raises(BitstreamError, match=problem):
            pack(replace(header, speaker=name), codes, pitch)
    assert unpack(pack(replace(header, speaker="é" * 127 + "a"), codes, pitch))[0].speaker == "é" * 127 + "a"  # 255 bytes
