"""The model that ships inside the package: present, small, complete, and working through the README's quick
start (recipes/quickstart.sh) as a new user would run it, with no --model anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from vqspeech import audio, features
from vqspeech.data import corpora
from vqspeech.eval import metrics
from vqspeech import checkpoint

MODEL = checkpoint.default_model_path()
VOICES = MODEL.with_suffix(".voices.npz")


def test_default_model_ships_small_and_complete():
    assert MODEL.exists() and VOICES.exists()
    shipped = sum(f.stat().st_size for f in MODEL.parent.iterdir() if f.is_file())
    assert shipped <= 25e6  # the package's budget for shipped weights, every model in it
    model = checkpoint.load()  # no path: the shipped one
    assert model.speaker_names == sorted(corpora.VCC2016_SOURCES + corpora.VCC2016_TARGETS)
    assert {model.speaker_info[s]["gender"] for s in model.speaker_names} == {"F", "M"}
    assert model.parallel is not None and model.default_decoder == "parallel"
    cost = checkpoint.load_checkpoint(MODEL)["training_cost"]
    assert cost["vqvae"]["steps"] > 0 and cost["parallel"]["steps"] > 0
    for path in (MODEL, MODEL.with_name("anyvoice.pt")):  # loading verified them: a damaged copy would have failed
        assert "weights_sha256" in checkpoint.load_checkpoint(path)


ANYVOICE = MODEL.with_name("anyvoice.pt")
PRIOR = checkpoint.prior_path(MODEL)


def test_the_shipped_models_keep_their_fingerprints():
    """Every .vqs file (and prior) made by a shipped model names it by this fingerprint: a setting added to the code
    space's config (top_codebook_size, normalise_frames) must leave it unchanged at its off value."""
    from vqspeech.models.vqvae import model_fingerprint

    assert model_fingerprint(checkpoint.load(MODEL)).hex() == "f21328cd0754f4f6"
    assert model_fingerprint(checkpoint.load(ANYVOICE)).hex() == "6953ec5420d87748"


def test_the_default_model_ships_its_prior_and_codes_losslessly_under_it():
    """The prior beside the default model is that model's (a prior of another model would be refused by name), and
    the default encode range-codes under it: fewer bytes, the same codes, the same audio."""
    from vqspeech.codec import api, bitstream, entropy
    from conftest import synthetic_voice

    assert PRIOR.exists()
    model = checkpoint.load()
    prior = entropy.prior_for(model)
    assert prior.info["steps"] > 0 and "heldout" in prior.info
    wav = synthetic_voice(2.0, 140, seed=5)
    coded, plain = api.encode_audio(model, wav), api.encode_audio(model, wav, prior=False)
    parsed = bitstream.read(coded)
    assert parsed.header.version == 4 and parsed.header.prior == prior.id and len(coded) < len(plain)
    np.testing.assert_array_equal(api.symbols(model, parsed)[0], bitstream.read(plain).codes)
    np.testing.assert_array_equal(api.decode_bytes(model, coded)[0], api.decode_bytes(model, plain)[0])


# The priors that coded each shipped model's files before its present one, shipped beside it by their ids.
EARLIER_PRIORS = {"default": ["5c004429", "e4368a5d"], "anyvoice": ["11e3cc5e"]}


@pytest.mark.parametrize("name", list(EARLIER_PRIORS))
def test_files_coded_under_a_shipped_model_s_earlier_priors_still_decode(name):
    """Every prior that once coded a shipped model's files ships beside it by its id (and no other does), and a file
    that names it decodes to the codes of plain packing."""
    from vqspeech.codec import api, bitstream, entropy
    from conftest import synthetic_voice

    path = MODEL.with_name(f"{name}.pt")
    earlier = sorted(path.parent.glob(path.stem + ".prior.*.pt*"))
    assert [p.name for p in earlier] == [f"{name}.prior.{i}.pt.xz" for i in EARLIER_PRIORS[name]]  # entropy.retire_prior
    model = checkpoint.load(name)
    wav = synthetic_voice(1.5, 120, seed=7)
    plain = bitstream.read(api.encode_audio(model, wav, prior=False)).codes
    for path, prior_id in zip(earlier, EARLIER_PRIORS[name]):
        old = bitstream.read(api.encode_audio(model, wav, prior=str(path)))
        assert old.header.prior == prior_id != entropy.prior_for(model).id
        np.testing.assert_array_equal(api.symbols(model, old)[0], plain)


@pytest.mark.skipif(not ANYVOICE.exists(), reason="no anyvoice model in the package")
def test_anyvoice_model_never_heard_the_held_out_speakers_and_carries_a_voice():
    from vqspeech.codec import api, bitstream
    from conftest import synthetic_voice

    model = checkpoint.load("anyvoice")
    assert model.config.voice == "vector" and model.parallel is not None
    names = set(model.speaker_names)
    assert set(corpora.VCC2016_SOURCES + corpora.VCC2016_TARGETS) <= names
    assert len([n for n in names if n.startswith(corpora.SPEECHOCEAN_PREFIX)]) >= 200
    assert not names & {corpora.SPEECHOCEAN_PREFIX + s for s in corpora.SPEECHOCEAN_UNSEEN}  # the unseen set stayed out
    wav_in = synthetic_voice(1.0, 150, seed=0)
    data = api.encode_audio(model, wav_in)
    parsed = bitstream.read(data)
    # Range-coded under anyvoice's own prior (beside it in the package), conditioned on the voice the file carries.
    from vqspeech.codec import entropy

    assert parsed.header.version == 4 and parsed.header.prior == entropy.prior_for(model).id
    assert len(parsed.header.voice) == model.config.speaker_dim
    plain = bitstream.read(api.encode_audio(model, wav_in, prior=False))
    np.testing.assert_array_equal(api.symbols(model, parsed)[0], plain.codes)
    wav, _ = api.decode_bytes(model, data)
    assert wav.shape == (16000,) and 0.01 < np.abs(wav).max() <= 1.0


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (sudo apt-get install flite)")
def test_quickstart_round_trips_and_converts_an_unseen_voice(tmp_path):
    out = tmp_path / "quickstart"
    done = subprocess.run(["bash", str(REPO / "recipes" / "quickstart.sh"), "--out", str(out), "--to", "TM1"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-3000:]
    source = audio.load(out / "input.wav")  # flite's slt: a voice the model never heard
    decoded = audio.load(out / "input.decoded.wav")
    converted = audio.load(out / "input.TM1.wav")
    assert decoded.size == source.size == converted.size
    # Through the codec it still speaks: measured 0.82 STOI and 0.96 voicing agreement with model v3 (0.83, 0.97 with v2).
    quality = metrics.speech_quality(source, decoded)
    assert quality["stoi"] > 0.7 and quality["voicing_agreement"] > 0.85, quality

    def median_f0(wav):
        f0 = features.extract_pitch(wav, 64).f0
        return float(np.median(f0[f0 > 0]))

    # Converted to TM1 (male, ~122 Hz on his training data) from a female voice (~170 Hz).
    tm1 = float(np.exp(checkpoint.load().speaker_pitch("TM1")[0]))
    assert median_f0(source) > 150 and abs(median_f0(converted) / tm1 - 1) < 0.15
    assert "voice TM1" in done.stdout and "vqs version 4" in done.stdout and "range-coded under prior" in done.stdout


def test_the_readme_python_example_runs(tmp_path):
    """README's Python block, as a library user would paste it, beside a talk.wav."""
    import re

    import soundfile as sf
    from conftest import synthetic_voice

    (block,) = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    sf.write(tmp_path / "talk.wav", synthetic_voice(1.0, 150, seed=0, sample_rate=22050), 22050)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, speaker, bps, unit = done.stdout.split()
    # Range-coded under the shipped prior: below the 2562.5 bit/s of packed codes and pitch even with the header on 1 s.
    assert abs(float(seconds) - 1.0) < 0.01 and speaker and 300 < float(bps) < 2500 and unit == "bit/s"
