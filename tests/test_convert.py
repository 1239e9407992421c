"""Voice conversion: the target's voice and pitch range reach the decoder, unseen voices become vectors
it can read, and `vqspeech convert` / `vqspeech speakers` keep the codec CLI's promises.

The model is tiny and untrained; most tests put a recorder in place of the slow autoregressive sampler
(`model.generate`) and check what it was given (conditioning, excitation), and one runs the real one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import DEBUG_OVERLAY, synthetic_voice, tiny_codec_model
from vqspeech import audio, cli, conversion, features, latent_match, speaker_encoder
from vqspeech.config import load_config, to_dict
from vqspeech.eval import mcd, speaker_id
from vqspeech.models.vqvae import VQSpeech
from vqspeech.checkpoint import save_checkpoint

SR = 16000
NAMES = ["alice", "bob", "carol"]
PITCH = {"alice": 220.0, "bob": 105.0, "carol": 160.0}  # the speakers' median F0 "measured in training"


def make_model(seed: int = 0) -> tuple[VQSpeech, object]:
    return tiny_codec_model(seed, tuple(NAMES), lf0={n: (PITCH[n], 0.1 + 0.05 * i) for i, n in enumerate(NAMES)})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model, config = make_model()
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    info = {"alice": {"gender": "F", "accent": "Scottish"}, "bob": {"gender": "M", "accent": None}}
    save_checkpoint(path, {"config": to_dict(config), "speakers": NAMES, "step": 0, "model": model.state_dict(),
                           "speaker_info": info})
    return path


@pytest.fixture
def model():
    return make_model()[0]


@pytest.fixture
def recorder(monkeypatch):
    """Records every generate call of every VQSpeech (the CLI loads its own model)."""
    calls = []

    def generate(self, cond, excitation, temperature=1.0, generator=None, lpc=None, lags=None):
        calls.append((self, cond.clone(), None if excitation is None else excitation.clone()))
        return torch.full((cond.shape[0], cond.shape[-1] * self.config.hop), 128, dtype=torch.long)

    monkeypatch.setattr(VQSpeech, "generate", generate)
    return calls


def excitation_f0(excitation: torch.Tensor, model) -> np.ndarray:
    """The F0 (Hz) of the rendered source: its first harmonic is sin(phase), read back with Praat."""
    first = excitation[0, 0].numpy().astype(np.float32)
    f0 = features.extract_pitch(first, model.config.pitch_hop).f0
    return f0[f0 > 0]


def speech(seconds=1.0, f0=150.0, seed=0):
    return audio.normalise(synthetic_voice(seconds, f0, seed))


# --- the library ------------------------------------------------------------------------------------------

def test_convert_to_training_speaker_uses_its_row_and_pitch_range(model, recorder):
    wav = speech(1.0, f0=150.0, seed=1)
    own = model.encode(wav)
    for target in ["alice", "bob"]:
        out = conversion.convert(model, wav, target=target)
        assert out.shape == wav.shape and out.dtype == np.float32
        _, cond, exc = recorder[-1]
        # The conditioning is the target's: equal to the table row's, different from the other speaker's.
        q = model.quantizer.lookup(own.codes[None])
        idx = NAMES.index(target)
        with torch.no_grad():
            expect = model.condition(q, model.speaker_voice(torch.tensor([idx])), own.pitch[None])
            other = model.condition(q, model.speaker_voice(torch.tensor([1 - idx])), own.pitch[None])
        torch.testing.assert_close(cond, expect)
        assert (cond - other).abs().max() > 1e-3
        # The pitch is rendered in the target's range: median F0 near the target's, far from the source's
        # (150 Hz; 10 % leaves room for the F0 ramps at voicing edges, the targets are 30 % away).
        f0 = excitation_f0(exc, model)
        assert len(f0) > 20
        assert np.median(f0) == pytest.approx(PITCH[target], rel=0.1)
        # ... and its spread (log-F0 std) scales with the target's std (alice 0.10, bob 0.15).
        std_ratio = np.log(f0).std() / model.speaker_pitch(target)[1]
        assert 0.5 < std_ratio < 1.5
    source_f0 = excitation_f0(model.excitation(own.pitch[None], torch.tensor([[own.lf0_mean, own.lf0_std]])), model)
    assert np.median(source_f0) == pytest.approx(150.0, rel=0.1)


def test_real_sampler_converts(model):
    wav = speech(0.125, seed=2)
    a = conversion.convert(model, wav, target="bob", generator=torch.Generator().manual_seed(0))
    b = conversion.convert(model, wav, target="bob", generator=torch.Generator().manual_seed(0))
    assert a.shape == wav.shape and np.isfinite(a).all() and a.std() > 0
    np.testing.assert_array_equal(a, b)


def test_speaker_vector_path_reads_like_a_table_row(model, recorder):
    enc = model.encode(speech(0.5, seed=3))
    model.decode(enc, "carol")
    model.decode(enc, None, speaker_vector=model.speaker_embedding.weight[2].detach())
    torch.testing.assert_close(recorder[0][1], recorder[1][1], rtol=0, atol=0)
    keys = set(make_model(1)[0].state_dict())
    assert set(model.state_dict()) == keys  # nothing added to the state dict


def test_convert_needs_exactly_one_voice(model):
    wav = speech(0.5)
    with pytest.raises(ValueError, match="exactly one"):
        conversion.convert(model, wav)
    with pytest.raises(ValueError, match="exactly one"):
        conversion.convert(model, wav, target="bob", references=[wav])
    with pytest.raises(ValueError, match="unknown speaker"):
        conversion.convert(model, wav, target="zed")


def test_reference_pitch_comes_from_the_references(model, recorder):
    refs = [speech(1.0, f0=260.0, seed=s) for s in (4, 5)]
    out = conversion.convert(model, speech(1.0, f0=120.0, seed=6), references=refs)
    assert out.shape == (SR,)
    f0 = excitation_f0(recorder[-1][2], model)
    assert np.median(f0) == pytest.approx(260.0, rel=0.08)
    voice = conversion.reference_voice(model, refs)
    assert set(voice.weights) == set(NAMES) and sum(voice.weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert np.exp(voice.lf0[0]) == pytest.approx(260.0, rel=0.05)
    with pytest.raises(ValueError, match="voiced speech"):
        conversion.reference_voice(model, [0.01 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)])


def test_fit_finds_the_row_that_explains_the_reference(model, monkeypatch):
    """If the reference's log-mel is exactly what carol's row predicts (from its own codes and pitch), the
    fit must put most weight on carol; with carol excluded (as for an unseen voice) she gets none."""
    ref = speech(1.0, f0=170.0, seed=7)
    enc = model.encode(ref)
    with torch.no_grad():
        carol = model.mel_head(model.condition(model.quantizer.lookup(enc.codes[None]), model.speaker_voice(torch.tensor([2])), enc.pitch[None]))
    monkeypatch.setattr(conversion.features, "log_mel", lambda *a, **k: carol)
    voice = conversion.reference_voice(model, [ref])
    assert voice.weights["carol"] > 0.6, voice.weights
    torch.testing.assert_close(voice.vector, torch.tensor(list(voice.weights.values())) @ model.speaker_embedding.weight.detach())
    loo = conversion.reference_voice(model, [ref], exclude=("carol",))
    assert set(loo.weights) == {"alice", "bob"}


def test_ridge_maps_centroids_to_their_rows():
    rng = np.random.default_rng(0)
    c = torch.from_numpy(rng.standard_normal((6, 32)).astype(np.float32))
    rows = torch.from_numpy(rng.standard_normal((6, 8)).astype(np.float32))
    convert_lambda = conversion.RIDGE_LAMBDA
    try:
        conversion.RIDGE_LAMBDA = 1e-6
        torch.testing.assert_close(conversion._ridge(c, rows, c[3]), rows[3], atol=1e-3, rtol=1e-3)
    finally:
        conversion.RIDGE_LAMBDA = convert_lambda
    # A d-vector at the centroids' mean maps to the mean row, whatever the regularisation.
    torch.testing.assert_close(conversion._ridge(c, rows, c.mean(0)), rows.mean(0), atol=1e-5, rtol=1e-5)


def test_voice_bank_round_trip_and_refusals(model, tmp_path):
    bank = speaker_encoder.VoiceBank(NAMES, np.eye(3, 256, dtype=np.float32))
    bank.save(tmp_path / "m.voices.npz")
    back = speaker_encoder.VoiceBank.load(tmp_path / "m.voices.npz", model)
    assert back.names == NAMES and np.array_equal(back.centroids, bank.centroids)
    speaker_encoder.VoiceBank(["x", "y", "z"], bank.centroids).save(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="not this model's"):
        speaker_encoder.VoiceBank.load(tmp_path / "other.npz", model)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a voice bank"):
        speaker_encoder.VoiceBank.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="voice bank"):
        conversion.reference_voice(model, [speech(1.0)], method="blend")


needs_resemblyzer = pytest.mark.skipif(not speaker_encoder.available(),
                                       reason=f"resemblyzer is not installed ({speaker_encoder.INSTALL_HINT})")


@needs_resemblyzer
def test_blend_follows_resemblyzer_similarity(model):
    """Enrol each speaker with synthetic voices at its pitch; a new voice near bob's pitch must blend mostly
    bob (resemblyzer tells these buzzes apart by their spectra), and its d-vector be nearest bob's."""
    enrol = {n: [speech(1.5, f0=PITCH[n], seed=10 * i + k) for k in range(2)] for i, n in enumerate(NAMES)}
    bank = speaker_encoder.VoiceBank.build(NAMES, enrol)
    assert bank.centroids.shape == (3, 256) and np.allclose(np.linalg.norm(bank.centroids, axis=1), 1, atol=1e-5)
    ref = [speech(1.5, f0=PITCH["bob"] * 1.03, seed=99)]
    assert speaker_id.nearest(speaker_encoder.embed(ref[0]), bank.names, bank.centroids) == "bob"
    voice = conversion.reference_voice(model, ref, method="blend", bank=bank)
    assert max(voice.weights, key=voice.weights.get) == "bob", voice.weights
    ridge = conversion.reference_voice(model, ref, method="ridge", bank=bank)
    assert ridge.weights is None and ridge.vector.shape == (model.config.speaker_dim,)


# --- metrics ---------------------------------------------------------------------------------------------

def test_mel_cepstral_distance():
    a, b = speech(1.0, 150, 0), speech(1.0, 150, 0)
    delayed = np.r_[np.zeros(1600, np.float32), a[:-1600]]  # the DTW should absorb a shift
    other = speech(1.0, 230, 5)
    assert mcd.mcd_wav(a, b) == 0.0
    assert mcd.mcd_wav(a, delayed) < 0.5 * mcd.mcd_wav(a, other)
    assert mcd.mel_cepstrum(a).shape[1] == mcd.ORDER


def _pocketsphinx_missing() -> str | None:
    import importlib.util
    import shutil

    if importlib.util.find_spec("pocketsphinx") is None:
        return "pocketsphinx is not installed (pip install pocketsphinx)"
    if shutil.which("flite") is None:
        return "flite (apt) is not installed: no speech to recognise"
    return None


# --- the command line ------------------------------------------------------------------------------------

def write(path, seconds=0.5, f0=150.0, seed=0):
    sf.write(path, synthetic_voice(seconds, f0, seed), SR)
    return path


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def test_speakers_lists_names_gender_accent_and_pitch(model_file, capsys):
    assert run("speakers", "--model", model_file) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "Scottish" in out and "220 Hz" in out and "105 Hz" in out
    assert run("speakers", "--model", model_file, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES
    assert rows[0]["gender"] == "F" and rows[1]["accent"] is None and rows[2]["gender"] is None
    assert rows[1]["f0_hz"] == pytest.approx(105.0, rel=1e-4)


def test_convert_folder_refuses_overwrite_and_reports_bad_files(model_file, tmp_path, capsys, recorder):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write(src / "a.wav", seed=1)
    write(src / "sub" / "b.flac", seed=2)
    (src / "broken.wav").write_bytes(b"RIFF nonsense")
    out = tmp_path / "out"
    code = run("convert", src, "--to", "bob", "-o", out, "--model", model_file, "-q")
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 3 files failed" in err and "broken.wav: not a readable audio file" in err
    assert len([l for l in err.splitlines() if "broken.wav" in l]) == 1
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == ["a.bob.wav", "sub/b.bob.wav"]  # no temporary files left behind either
    wav, rate = sf.read(out / "a.bob.wav")
    assert rate == SR and len(wav) == int(0.5 * SR)
    # The decoder was given bob's pitch range.
    assert np.median(excitation_f0(recorder[0][2], recorder[0][0])) == pytest.approx(PITCH["bob"], rel=0.1)
    # Again: every output exists, nothing is overwritten, the decoder is not even started.
    n = len(recorder)
    before = (out / "a.bob.wav").stat().st_mtime_ns
    assert run("convert", src, "--to", "bob", "-o", out, "--model", model_file, "-q") == 1
    err = capsys.readouterr().err
    assert "3 of 3 files failed" in err and err.count("exists (use --force to overwrite)") == 2
    assert len(recorder) == n and (out / "a.bob.wav").stat().st_mtime_ns == before
    assert run("convert", src / "a.wav", "--to", "bob", "-o", out / "a.bob.wav", "--model", model_file, "--force", "-q") == 0


def test_convert_usage_errors_exit_2(model_file, tmp_path, capsys):
    a = write(tmp_path / "a.wav")
    assert run("convert", a, "--to", "zed", "--model", model_file) == 2
    assert "unknown speaker 'zed'" in capsys.readouterr().err
    assert run("convert", a, "--to-reference", tmp_path / "missing.wav", "--model", model_file) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    assert run("convert", a, "--to", "bob", "--decoder", "parallel", "--model", model_file) == 2
    assert "no parallel decoder" in capsys.readouterr().err
    assert run("convert", a, "--to-reference", a, "--method", "blend", "--model", model_file) == 2
    assert "voice bank" in capsys.readouterr().err
    assert run("convert", a, "--to", "bob", "--match-k", "4", "--model", model_file) == 2
    assert "--match-k/--match-search match the input to reference recordings" in capsys.readouterr().err
    assert run("convert", a, "--to", "bob", "--match-search", "plain", "--model", model_file) == 2
    assert "give --to-reference, not --to" in capsys.readouterr().err
    assert run("convert", a, "--to-reference", a, "--match-blend", "1.5", "--model", model_file) == 2
    assert "--match-blend 1.5: give the share of the way to the matches, in (0, 1]" in capsys.readouterr().err
    assert run("convert", a, "--to-reference", a, "--revoice", "2", "--model", model_file) == 2  # a table model fits
    assert "--adapt-steps/--revoice tune method adapt; this model finds voices by 'fit'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --to and --to-reference together
        run("convert", a, "--to", "bob", "--to-reference", a)
    assert not list(tmp_path.glob("*.converted.wav")) and not list(tmp_path.glob("*.bob.wav"))


def test_convert_to_reference_from_the_command_line(model_file, tmp_path, capsys, recorder):
    a = write(tmp_path / "a.wav", seconds=0.5, f0=120.0, seed=3)
    refs = [write(tmp_path / f"ref{k}.wav", seconds=1.0, f0=250.0, seed=20 + k) for k in range(2)]
    assert run("convert", a, "--to-reference", *refs, "--model", model_file, "-q") == 0
    captured = capsys.readouterr()
    assert (tmp_path / "a.converted.wav").exists() and "reference voice:" in captured.err
    assert np.median(excitation_f0(recorder[-1][2], recorder[-1][0])) == pytest.approx(250.0, rel=0.08)


def test_convert_to_reference_with_matched_latents(model_file, tmp_path, recorder, monkeypatch):
    """--match-k K: the input's latents go through a LatentMatch of the references before they are quantised, by
    default searched with the input's own mean latent removed (for_source gave it the input's)."""
    a = write(tmp_path / "a.wav", seconds=0.5, f0=120.0, seed=3)
    refs = [write(tmp_path / f"ref{k}.wav", seconds=1.0, f0=250.0, seed=20 + k) for k in range(2)]
    built = []
    original = latent_match.LatentMatch.__call__

    def spy(self, z):
        built.append((self.k, self.bank.shape[0], self.search, self.source_mean is not None))
        return original(self, z)

    monkeypatch.setattr(latent_match.LatentMatch, "__call__", spy)
    assert run("convert", a, "--to-reference", *refs, "--model", model_file, "--match-k", "3", "-q") == 0
    assert (tmp_path / "a.converted.wav").exists()
    assert built and all(k == 3 and bank > 100 and search == latent_match.MATCH_SEARCH and (known or search == "plain")
                         for k, bank, search, known in built)  # two 1 s references: ~2 x 250 frames
    plain = recorder[-1][1]
    assert run("convert", a, "--to-reference", *refs, "--model", model_file, "-o", tmp_path / "plain.wav", "-q") == 0
    assert not torch.equal(plain, recorder[-1][1])  # the matched codes condition the decoder differently


@needs_resemblyzer
def test_enroll_then_convert_by_blend(model_file, tmp_path, capsys, recorder):
    corpus = tmp_path / "corpus"
    for i, name in enumerate(NAMES):
        (corpus / name).mkdir(parents=True)
        for k in range(2):
            write(corpus / name / f"{k}.wav", seconds=1.0, f0=PITCH[name], seed=10 * i + k)
    bank = tmp_path / "bank.npz"
    args = ["speakers", "--model", model_file, "--voices", bank]
    assert run(*args, "--enroll", corpus, "--per-speaker", 2) == 0 and bank.exists()
    assert run(*args, "--enroll", corpus) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    assert run(*args) == 0 and "voice bank for --to-reference methods blend/ridge: yes" in capsys.readouterr().out
    ref = write(tmp_path / "ref.wav", seconds=1.5, f0=PITCH["bob"] * 1.03, seed=77)
    a = write(tmp_path / "a.wav", seconds=0.5, seed=3)
    assert run("convert", a, "--to-reference", ref, "--method", "blend", "--voices", bank, "--model", model_file, "-q") == 0
    assert "reference voice: bob" in capsys.readouterr().err


@needs_resemblyzer
@pytest.mark.skipif(_pocketsphinx_missing() is not None and "flite" not in str(_pocketsphinx_missing()),
                    reason=str(_pocketsphinx_missing()))
def test_benchmark_runs_end_to_end_on_a_toy_vcc(tmp_path):
    """bench/vc.py on a synthetic VCC layout (10 speakers x 16 sentences of 0.5 s, the last 12 held out)
    with a tiny model that knows the 10 speakers: every system and measure, one pair, one sentence."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from vqspeech.data import corpora

    vcc = list(corpora.VCC2016_SOURCES + corpora.VCC2016_TARGETS)
    root = tmp_path / "vcc"
    for i, name in enumerate(vcc):
        (root / name).mkdir(parents=True)
        for k in range(16):
            write(root / name / f"1001{k + 47:02d}.wav", seconds=0.5, f0=100 + 15 * i, seed=100 * i + k)
    config = load_config(DEBUG_OVERLAY)
    config.model.n_speakers = len(vcc)
    torch.manual_seed(0)
    model = VQSpeech(config.model, vcc)
    save_checkpoint(tmp_path / "m.pt", {"config": to_dict(config), "speakers": vcc, "step": 7, "model": model.state_dict()})
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "vc.py"), "--model", str(tmp_path / "m.pt"), "--data", str(root),
                             "--out", str(out), "--limit", "1", "--sources", "SF1", "--targets", "TM2", "--enrol", "2",
                             "--ref-utts", "2", "--methods", "fit,ridge"],
                            capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "vc.md").read_text()
    for system in ["none", "pitch-shift", "vqspeech", "ref-fit", "ref-ridge"]:
        assert f"| {system} | 1 |" in report
    assert "sentences 100151" in report and "(step 7)" in report and (out / "vc.png").stat().st_size > 1000
    rows = (out / "vc.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and rows[1].startswith("SF1,TM2,100151,none,False,True,SF1,False,True,")
    # "none" is the source itself: its distance is the source's recording's to the target's.
    direct = mcd.mcd_wav(audio.load(root / "SF1" / "100151.wav"), audio.load(root / "TM2" / "100151.wav"))
    assert float(rows[1].split(",")[9]) == pytest.approx(direct, rel=1e-6)


def test_nearest_speaker_uses_the_voice_bank_when_there_is_one(model, monkeypatch):
    wav = synthetic_voice(1.0, 150, 0)
    bank = speaker_encoder.VoiceBank(list(model.speaker_names), np.eye(len(model.speaker_names), 256, dtype=np.float32))
    d = np.zeros(256, np.float32)
    d[1] = 1.0  # closest to the second speaker's centroid
    monkeypatch.setattr(speaker_encoder, "available", lambda: True)
    monkeypatch.setattr(speaker_encoder, "embed_speaker", lambda wavs: d)
    model.voice_bank = bank
    assert conversion.nearest_speaker(model, wav) == model.speaker_names[1]
    model.voice_bank = None  # without a bank: the fit's heaviest row
    monkeypatch.setattr(conversion, "reference_voice", lambda m, refs, method: conversion.Voice(None, None, {model.speaker_names[0]: 0.9}))
    assert conversion.nearest_speaker(model, wav) == model.speaker_names[0]
