"""The codec on files: chunked encoding equals one-shot encoding, wav -> .vqs -> wav, and the command
line's promises (no overwrites, atomic outputs, per-file failures with a summary, exit codes).

The model is tiny and untrained (its codebook set from encoder outputs so that codes vary); most
decodes use a stand-in for the slow autoregressive sampler, and one test runs the real one."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import REPO, synthetic_voice
from tests.conftest import tiny_codec_model as make_model
from vqspeech import audio, checkpoint, cli
from vqspeech.codec import api, bitstream, stream
from vqspeech.models import encoding
from vqspeech.config import to_dict
from vqspeech.models.vqvae import model_fingerprint
from vqspeech.checkpoint import load_model, save_checkpoint

SR = 16000


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model, config = make_model(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, {"config": to_dict(config), "speakers": model.speaker_names, "step": 0, "model": model.state_dict()})
    return path


@pytest.fixture(scope="module")
def model(model_file):
    return load_model(model_file)


@pytest.fixture
def fake_decoder(monkeypatch):
    """Stand-in for the sampler: records its calls, returns a deterministic tone of the right length."""
    calls = []

    def decode(model, encoded, speaker, lf0, generator, decoder="autoregressive"):
        calls.append((encoded, speaker, lf0))
        return (0.1 * np.sin(np.arange(encoded.n_samples) * 0.05)).astype(np.float32)

    monkeypatch.setattr(stream, "decode_chunk", decode)
    return calls


def write(path, seconds=0.2, f0=150.0, seed=0, rate=SR, channels=1):
    wav = synthetic_voice(seconds, f0, seed, rate)
    sf.write(path, np.stack([wav] * channels, 1) if channels > 1 else wav, rate)
    return path


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


# --- the library: chunking is invisible -------------------------------------------------------------------

def test_encode_file_equals_one_shot_encode(model, tmp_path):
    src = write(tmp_path / "a.wav", seconds=1.0, seed=3)
    api.encode_file(model, src, tmp_path / "a.vqs")
    parsed, _ = api.read_vqs(tmp_path / "a.vqs")
    header, codes, pitch = parsed.header, parsed.codes, parsed.pitch
    ref = model.encode(audio.load(src))  # what training-time code would produce
    assert len(np.unique(codes)) > 5  # the test means something only if the codes vary
    np.testing.assert_array_equal(codes, ref.codes.numpy())
    np.testing.assert_array_equal(pitch, ref.pitch.numpy())
    assert (header.lf0_mean, header.lf0_std) == (np.float32(ref.lf0_mean), np.float32(ref.lf0_std))
    assert header.n_samples == SR and header.model == model_fingerprint(model).hex()


def test_chunked_codes_equal_one_shot_and_need_their_context(model):
    wav = audio.normalise(synthetic_voice(1.0, 150, 3))
    blocks = [wav[i : i + 1000] for i in range(0, len(wav), 1000)]  # blocks unaligned with chunks
    small = dict(chunk_seconds=0.128, encoder_seconds=0.032, pitch_context_seconds=0.064)
    ref = model.encode(wav).codes
    chunked = encoding.encode_stream(model, blocks, len(wav), **small).codes
    torch.testing.assert_close(chunked, ref, rtol=0, atol=0)
    # The control: without the receptive field as context the codes at chunk edges change.
    starved = encoding.encode_stream(model, blocks, len(wav), **small, context=0).codes
    assert (starved != ref).sum() > 0


def test_chunked_pitch_equals_one_shot(model):
    wav = audio.normalise(synthetic_voice(1.0, 150, 0))
    ref = model.encode(wav)
    enc = encoding.encode_stream(model, [wav], len(wav), chunk_seconds=0.256, encoder_seconds=0.032, pitch_context_seconds=0.2,
                               peak=float(np.abs(wav).max()))
    torch.testing.assert_close(enc.pitch, ref.pitch, rtol=0, atol=0)


def test_streamed_reading_and_level_equal_audio_load(tmp_path):
    stereo = write(tmp_path / "s.flac", seconds=0.7, rate=44100, channels=2, seed=4)
    blocks = list(audio.read_blocks(stereo, SR, block_frames=5000))
    assert len(blocks) > 3
    raw = audio.load(stereo, normalise_level=False)
    np.testing.assert_array_equal(np.concatenate(blocks), raw)
    for wav in [raw, raw[:300], raw * 1e-3, np.r_[raw, np.zeros(10000, np.float32)]]:
        level = audio.measure_level([wav[i : i + 777] for i in range(0, len(wav), 777)])
        np.testing.assert_array_equal((wav * level.gain).astype(np.float32), audio.normalise(wav))
    with pytest.raises(audio.AudioError, match="silent"):
        audio.measure_level([np.zeros(1000, np.float32)])


def test_decode_stream_slices_codes_and_pitch_in_step(model, fake_decoder):
    enc = model.encode(audio.normalise(synthetic_voice(1.0, 150, 1)))
    enc.n_samples -= 100
    hop, pf = model.config.hop, model.config.pitch_frames
    pieces = list(stream.decode_stream(model, enc, "alice", chunk_seconds=0.1, overlap_seconds=0.032))
    frames, overlap = round(0.1 * 16000 / hop) // pf * pf, round(0.032 * 16000 / hop) // pf * pf
    assert len(pieces) == len(fake_decoder) > 5 and overlap > 0
    assert sum(p.size for p in pieces) == enc.n_samples
    for k, (piece, _, _) in enumerate(fake_decoder):  # chunk k: its frames and the next chunk's first `overlap`
        a = k * frames
        e = min(a + frames + overlap, enc.codes.shape[0])
        torch.testing.assert_close(piece.codes, enc.codes[a:e])
        torch.testing.assert_close(piece.pitch, enc.pitch[a // pf : e // pf])


def test_decode_stream_crossfades_chunk_edges(model, monkeypatch):
    """Chunk k decodes to the constant k + 1: the output holds each constant and ramps smoothly (raised
    cosine, monotone) from one to the next over the overlap at the start of each later chunk."""
    calls = []

    def decode(model, encoded, speaker, lf0, generator, decoder=None):
        calls.append(encoded.n_samples)
        return np.full(encoded.n_samples, float(len(calls)), np.float32)

    monkeypatch.setattr(stream, "decode_chunk", decode)
    enc = model.encode(audio.normalise(synthetic_voice(1.0, 150, 1)))
    out = np.concatenate(list(stream.decode_stream(model, enc, "alice", chunk_seconds=0.256, overlap_seconds=0.064)))
    chunk, fade = 4096, 1024  # samples: 0.256 s and 0.064 s at 16 kHz (whole pitch frames)
    assert out.size == enc.n_samples and len(calls) >= 3
    for k in range(1, len(calls)):
        ramp = out[k * chunk : k * chunk + fade]
        assert ramp.size == fade and np.all(np.diff(ramp) > 0) and k < ramp[0] < k + 0.01 and k + 0.99 < ramp[-1] < k + 1
        np.testing.assert_allclose(out[k * chunk + fade : (k + 1) * chunk], k + 1)
    np.testing.assert_allclose(out[:chunk], 1.0)


def test_real_decode_file_matches_decode_bytes(model, tmp_path):
    """The real sampler, through the file writer (16-bit, resampled) and in memory: same audio."""
    data = api.encode_audio(model, synthetic_voice(0.2, 150, 0))
    (tmp_path / "a.vqs").write_bytes(data)
    wav, header = api.decode_bytes(model, data, seed=7)
    api.decode_file(model, tmp_path / "a.vqs", tmp_path / "a.wav", seed=7)
    written, rate = sf.read(tmp_path / "a.wav", dtype="float32")
    assert rate == SR and wav.shape == written.shape == (header.n_samples,) and np.abs(wav).max() > 0.01
    assert np.abs(written - wav).max() <= 1 / 32768 + 1e-6  # the same samples (so the seed fixes them), 16-bit rounded


def test_fingerprint_survives_float16_but_not_retraining(model):
    fp = model_fingerprint(model)
    half = make_model(0)[0]
    half.load_state_dict(model.state_dict())
    half.half().float()
    assert model_fingerprint(half) == fp
    with torch.no_grad():
        half.decoder.out2.bias.add_(1.0)  # the decoder is not part of what the codes mean
    assert model_fingerprint(half) == fp
    with torch.no_grad():
        half.encoder.net[0].weight.mul_(1.01)
    assert model_fingerprint(half) != fp
    assert model_fingerprint(make_model(1)[0]) != fp


# --- the command line ----------------------------------------------------------------------------------------

def test_encode_info_decode(model_file, tmp_path, capsys, fake_decoder):
    write(tmp_path / "a.wav")
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "--speaker", "alice") == 0
    assert run("info", tmp_path / "a.vqs") == 0
    out = capsys.readouterr().out
    assert "1562.5 bit/s" in out and "speaker    alice" in out and "52 x 5 bits" in out
    data = (tmp_path / "a.vqs").read_bytes()
    header = bitstream.unpack(data)[0]
    overhead = len(data) - header.payload_bytes
    assert overhead == 25 + 9 + len("alice") + 1  # fixed fields, CRC, name length; 7 varints (16000 and 250 codes: 2 bytes each); name; no voice vector (1 byte)
    assert "vqs version 3" in out and f"header and checksum {overhead} bytes" in out
    assert f"payload {header.payload_bytes} bytes = {header.payload_bytes * 8 / header.duration:.1f} bit/s" in out
    assert run("decode", tmp_path / "a.vqs", "--model", model_file, "--sample-rate", 8000) == 0
    wav, rate = sf.read(tmp_path / "a.decoded.wav")
    assert rate == 8000 and abs(len(wav) - 1600) <= 1
    assert fake_decoder[0][1] == "alice" and fake_decoder[0][2] is None  # the recorded voice, its own pitch
    assert run("decode", tmp_path / "a.vqs", "--model", model_file, "--speaker", "bob", "-o", tmp_path / "b.flac") == 0
    assert fake_decoder[-1][1] == "bob" and fake_decoder[-1][2] == pytest.approx((np.log(220.0), 0.15))
    assert sf.info(tmp_path / "b.flac").format == "FLAC"
    # A version 1 file (JSON header) of the same codes still reads and decodes with this model.
    meta = json.dumps({k: v for k, v in dataclasses.asdict(header).items() if k != "version"}).encode()
    body = b"VQS\x01" + struct.pack(">I", len(meta)) + meta + data[-4 - header.payload_bytes : -4]
    (tmp_path / "old.vqs").write_bytes(body + struct.pack(">I", zlib.crc32(body)))
    assert run("info", tmp_path / "old.vqs") == 0 and "vqs version 1" in capsys.readouterr().out
    assert run("decode", tmp_path / "old.vqs", "--model", model_file) == 0 and fake_decoder[-1][1] == "alice"
    assert sf.read(tmp_path / "old.decoded.wav")[0].shape == (header.n_samples,)


def test_encode_records_the_nearest_voice_by_default(model_file, tmp_path, capsys, monkeypatch):
    from vqspeech import conversion

    write(tmp_path / "a.wav")
    seen = []
    monkeypatch.setattr(conversion, "reference_voice", lambda model, refs, method: (
        seen.append((refs[0].size, method)) or conversion.Voice(None, None, {"alice": 0.3, "bob": 0.7})))
    assert run("encode", tmp_path / "a.wav", "--model", model_file) == 0
    assert bitstream.unpack((tmp_path / "a.vqs").read_bytes())[0].speaker == "bob"  # the largest weight
    assert seen == [(3200, "fit")]  # the whole (short, 0.2 s) recording
    assert "voice bob" in capsys.readouterr().out
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "--speaker", "none", "--force") == 0
    assert bitstream.unpack((tmp_path / "a.vqs").read_bytes())[0].speaker is None
    # No voiced speech to place: nothing recorded, and the file is still written.
    monkeypatch.setattr(conversion, "reference_voice", lambda *a, **k: (_ for _ in ()).throw(ValueError("too little voiced audio")))
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "--force") == 0
    assert bitstream.unpack((tmp_path / "a.vqs").read_bytes())[0].speaker is None


def test_never_overwrites_without_force(model_file, tmp_path, capsys):
    write(tmp_path / "a.wav")
    (tmp_path / "a.vqs").write_bytes(b"precious")
    assert run("encode", tmp_path / "a.wav", "--model", model_file) == 1
    err = capsys.readouterr().err
    assert "1 of 1 files failed:" in err and "exists (use --force to overwrite)" in err
    assert (tmp_path / "a.vqs").read_bytes() == b"precious"
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "--force") == 0
    assert bitstream.unpack((tmp_path / "a.vqs").read_bytes())[0].n_samples == 3200
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "-o", tmp_path / "x.wav") == 1
    assert "must end in .vqs" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()


def test_many_inputs_with_failures(model_file, tmp_path, capsys, fake_decoder):
    (tmp_path / "in" / "spk").mkdir(parents=True)
    write(tmp_path / "in" / "spk" / "x.wav", seed=1)
    write(tmp_path / "in" / "y.flac", seed=2, rate=22050)
    write(tmp_path / "z.wav", seed=3)
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    sf.write(tmp_path / "quiet.wav", np.zeros(3200, np.float32), SR)
    out = tmp_path / "out"
    code = run("encode", tmp_path / "in", str(tmp_path / "z*.wav"), tmp_path / "broken.wav", tmp_path / "quiet.wav",
               tmp_path / "missing.wav", "-o", out, "--model", model_file)
    err = capsys.readouterr().err
    assert code == 1
    assert "3 of 6 files failed:" in err
    assert "broken.wav: not a readable audio file" in err and "quiet.wav: audio is silent" in err
    assert "missing.wav: no such file or folder" in err
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert made == ["spk", "spk/x.vqs", "y.vqs", "z.vqs"]  # folder layout mirrored, no temporary files left
    assert run("decode", out, "--model", model_file, "-o", tmp_path / "back") == 0
    assert sorted(p.name for p in (tmp_path / "back").rglob("*.wav")) == ["x.decoded.wav", "y.decoded.wav", "z.decoded.wav"]


def test_usage_errors_exit_2(model_file, tmp_path, capsys, monkeypatch):
    write(tmp_path / "a.wav")
    write(tmp_path / "b.wav")
    (tmp_path / "file").write_text("")
    assert run("encode", tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "file", "--model", model_file) == 2
    assert "need an output folder" in capsys.readouterr().err
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "--speaker", "carol") == 2
    assert "unknown speaker 'carol'" in capsys.readouterr().err
    monkeypatch.setattr(checkpoint, "default_model_path", lambda: tmp_path / "nowhere" / "default.pt")
    assert run("encode", tmp_path / "a.wav") == 2
    assert "no default model is installed yet" in capsys.readouterr().err
    assert not (tmp_path / "a.vqs").exists()


def test_decode_refuses_bad_files_and_foreign_models(model_file, tmp_path, capsys, fake_decoder):
    other, config = make_model(1)
    other_file = tmp_path / "other.pt"
    save_checkpoint(other_file, {"config": to_dict(config), "speakers": other.speaker_names, "step": 0, "model": other.state_dict()})
    write(tmp_path / "a.wav")
    assert run("encode", tmp_path / "a.wav", "--model", other_file) == 0
    data = (tmp_path / "a.vqs").read_bytes()
    (tmp_path / "bad.vqs").write_bytes(data[:20] + bytes([data[20] ^ 4]) + data[21:])
    (tmp_path / "cut.vqs").write_bytes(data[:-9])
    assert run("decode", tmp_path / "a.vqs", tmp_path / "bad.vqs", tmp_path / "cut.vqs", "--model", model_file) == 1
    err = capsys.readouterr().err
    assert "3 of 3 files failed:" in err and "made by another model" in err and err.count("checksum mismatch") == 2
    assert not list(tmp_path.glob("*.decoded.wav")) and not list(tmp_path.glob(".*.tmp")) and not fake_decoder
    assert run("decode", tmp_path / "a.vqs", "--model", model_file, "--force-model") == 0
    assert (tmp_path / "a.decoded.wav").exists()


def test_failed_decode_leaves_nothing_half_written(model, tmp_path, monkeypatch):
    (tmp_path / "a.vqs").write_bytes(api.encode_audio(model, synthetic_voice(1.0, 150, 0)))
    calls = []

    def dies_on_second_chunk(model, encoded, speaker, lf0, generator, decoder="autoregressive"):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return np.zeros(encoded.n_samples, np.float32)

    monkeypatch.setattr(stream, "decode_chunk", dies_on_second_chunk)
    (tmp_path / "old.wav").write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        api.decode_file(model, tmp_path / "a.vqs", tmp_path / "old.wav", force=True, chunk_seconds=0.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vqs", "old.wav"]
    assert (tmp_path / "old.wav").read_bytes() == b"old"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "vqspeech", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and all(cmd in result.stdout for cmd in ("encode", "decode", "info"))


def test_version_sample_rate_range_and_a_closed_pipe(model_file, tmp_path, capsys):
    import subprocess
    import sys

    with pytest.raises(SystemExit) as done:
        run("--version")
    assert done.value.code == 0 and capsys.readouterr().out.strip().startswith("vqspeech ")
    for rate, problem in (("0", "0 Hz is outside"), ("-5", "-5 Hz is outside"), ("1000000000", "outside 8000..192000"),
                          ("8k", "not a whole number")):
        with pytest.raises(SystemExit) as done:
            run("decode", tmp_path / "x.vqs", "--sample-rate", rate)
        assert done.value.code == 2 and "--sample-rate" in (err := capsys.readouterr().err) and problem in err
    write(tmp_path / "a.wav")
    assert run("encode", tmp_path / "a.wav", "--model", model_file, "--speaker", "alice") == 0
    # `vqspeech info a.vqs | head -1`: the reader leaves early; no traceback.
    many = " ".join([str(tmp_path / "a.vqs")] * 1000)  # ~700 kB of output: more than a pipe holds, so writing fails
    cmd = f"{sys.executable} -m vqspeech.cli info {many} | head -1"
    piped = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    assert piped.stdout.startswith(str(tmp_path / "a.vqs")) and "Traceback" not in piped.stderr and "Broken" not in piped.stderr


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lf0_mean=st.floats(width=32) | st.floats(0, 10, width=32), lf0_std=st.floats(width=32) | st.floats(0, 4, width=32),
       seed=st.integers(0, 3))
def test_any_header_with_a_valid_checksum_decodes_to_bounded_audio_or_is_refused(model, lf0_mean, lf0_std, seed):
    """A forged file whose CRC is right: its header values either decode to audio no louder than a real file's, or
    are refused with a BitstreamError; never full-scale noise, never a traceback."""
    good = api.encode_audio(model, synthetic_voice(0.5, 150, seed))
    header, codes, pitch = bitstream.unpack(good)
    body = bytearray(good[:-4])
    struct.pack_into(">ff", body, 12, lf0_mean, lf0_std)  # the v2/v3 fixed fields: magic, version, fingerprint, then these
    forged = bytes(body)
    forged = forged + struct.pack(">I", zlib.crc32(forged))
    try:
        wav, h = api.decode_bytes(model, forged)
    except bitstream.BitstreamError:
        assert not (0 <= lf0_mean <= 10 and 0 <= lf0_std <= 4)
        return
    assert 0 <= h.lf0_mean <= 10 and 0 <= h.lf0_std <= 4
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0 and len(wav) == header.n_samples


def test_decoding_a_speaker_the_model_lacks_says_whose_voice_it_used(model, tmp_path, fake_decoder):
    header, codes, pitch = bitstream.unpack(api.encode_audio(model, synthetic_voice(0.5, 150, 1)))
    header.speaker = "zed"  # as a file of another model (--force-model) records its own speakers
    (tmp_path / "z.vqs").write_bytes(bitstream.pack(header, codes, pitch))
    _, voice = api.decode_file(model, tmp_path / "z.vqs", tmp_path / "z.wav")
    assert voice.startswith("alice (the file's speaker 'zed' is not one of this model's")
