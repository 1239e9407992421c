"""Analysis by synthesis at encode time (models/refine.py): the refined codes render the recording closer than the
encoder's plain choice, they stay codes of the same codebook and length, streaming gives what one block gives, and
what cannot be refined is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_voice, tiny_codec_model
from vqspeech import audio
from vqspeech.codec import api
from vqspeech.models import refine
from vqspeech.models.parallel import stft_loss


@pytest.fixture(scope="module")
def model():
    return tiny_codec_model(0, ("alice", "bob"), parallel_decoder=True)[0]


def loss_of(model, wav, encoded, speaker="alice"):
    """The parallel decoder's STFT loss against `wav` for these codes, with fixed noise."""
    c = model.config
    with torch.no_grad():
        voice = model.speaker_voice(torch.tensor([model.speaker_index(speaker)]))
        cond = model.condition(model.dequantise(encoded.codes[None]), voice, encoded.pitch[None])
        f0 = model.f0(encoded.pitch[None], torch.tensor([[encoded.lf0_mean, encoded.lf0_std]]))
        noise = torch.randn(1, cond.shape[-1] * c.hop, generator=torch.Generator().manual_seed(0))
        out = model.parallel(cond, f0, noise, voice=voice)
        target = torch.nn.functional.pad(torch.from_numpy(wav), (0, out.shape[-1] - wav.size))
        return float(stft_loss()(out[:, None], target[None, None]))


def test_refined_codes_render_the_recording_closer(model, monkeypatch):
    wav = audio.normalise(synthetic_voice(1.5, 150, 1))
    plain = model.encode(wav)
    assert refine.refine(model, [wav], wav.size, plain, 0, "alice") is plain
    monkeypatch.setattr(refine, "WINDOW_SECONDS", 0.5)  # three windows, so the context between them is exercised
    refined = refine.refine(model, [wav], wav.size, plain, 20, "alice")
    assert refined.codes.shape == plain.codes.shape and torch.equal(refined.pitch, plain.pitch)
    assert 0 <= int(refined.codes.min()) and int(refined.codes.max()) < model.config.quantizer.codebook_size
    assert not torch.equal(refined.codes, plain.codes)
    assert loss_of(model, wav, refined) < loss_of(model, wav, plain)
    streamed = refine.refine(model, [wav[:7000], wav[7000:]], wav.size, plain, 20, "alice")
    assert torch.equal(streamed.codes, refined.codes)


def test_refinement_through_the_codec_api(model):
    wav = audio.normalise(synthetic_voice(1.0, 200, 2))
    data = api.encode_audio(model, wav, speaker="alice", prior=False, refine_steps=5)
    decoded, header = api.decode_bytes(model, data)
    assert header.speaker == "alice" and decoded.shape == wav.shape and np.isfinite(decoded).all()


def test_a_file_that_records_no_voice_refines_in_the_voice_it_decodes_in(model):
    # The library's default (speaker=None): the decoder renders such a file in the model's first speaker, so that is
    # the voice the codes are refined for (the README's Python example runs this way).
    wav = audio.normalise(synthetic_voice(1.0, 200, 4))
    plain = model.encode(wav)
    unnamed = refine.refine(model, [wav], wav.size, plain, 5)
    assert torch.equal(unnamed.codes, refine.refine(model, [wav], wav.size, plain, 5, model.speaker_names[0]).codes)
    assert not torch.equal(unnamed.codes, plain.codes)
    decoded, header = api.decode_bytes(model, api.encode_audio(model, wav, prior=False, refine_steps=5))
    assert header.speaker is None and decoded.shape == wav.shape


def test_what_cannot_be_refined_is_refused(model):
    wav = audio.normalise(synthetic_voice(1.0, 150, 3))
    no_parallel = tiny_codec_model(0, ("alice", "bob"))[0]
    with pytest.raises(ValueError, match="parallel decoder"):
        refine.refine(no_parallel, [wav], wav.size, no_parallel.encode(wav), 3, "alice")


def test_a_file_refines_as_the_same_audio_in_memory(model, tmp_path):
    """encode_file reads the file a third time to refine (streaming): the same codes as encode_audio's."""
    import soundfile as sf

    wav = audio.normalise(synthetic_voice(1.2, 170, 4))
    sf.write(tmp_path / "a.wav", wav, 16000, subtype="FLOAT")
    api.encode_file(model, tmp_path / "a.wav", tmp_path / "a.vqs", speaker="alice", prior=False, refine_steps=4)
    from_file = api.read_vqs(tmp_path / "a.vqs")[0]
    in_memory = api.bitstream.read(api.encode_audio(model, wav, speaker="alice", prior=False, refine_steps=4))
    plain = api.bitstream.read(api.encode_audio(model, wav, speaker="alice", prior=False))
    assert np.array_equal(from_file.codes, in_memory.codes) and not np.array_equal(in_memory.codes, plain.codes)
