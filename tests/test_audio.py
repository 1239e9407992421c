import numpy as np
import pytest
import soundfile as sf
import torch

from vqspeech import audio
from tests.conftest import synthetic_voice


def test_load_resamples_mixes_and_normalises(tmp_path):
    stereo = np.stack([synthetic_voice(0.5, 150, 0, 44100), synthetic_voice(0.5, 150, 1, 44100)], 1)
    sf.write(tmp_path / "x.flac", stereo, 44100)
    wav = audio.load(tmp_path / "x.flac")
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 8000) <= 1
    assert np.abs(wav).max() <= 0.95 + 1e-6


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("this is not audio"), "not a readable audio file"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "empty audio"),
        (lambda p: sf.write(p, np.zeros(16000, np.float32), 16000), "silent"),
        (lambda p: sf.write(p, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, make, problem):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(audio.AudioError) as e:
        audio.load(path)
    assert str(path) in str(e.value) and problem in str(e.value)
    assert "\n" not in str(e.value)


def test_mu_law_round_trip_is_within_one_step():
    x = torch.linspace(-1, 1, 1001)
    q = audio.mu_law_encode(x)
    assert q.min() == 0 and q.max() == 255
    y = audio.mu_law_decode(q)
    # The worst step of 8-bit mu-law is at full scale: about 2 * 1 / (mu * ln(1 + mu) / ...) ~ 0.03.
    assert (y - x).abs().max() < 0.035
    assert (y - x)[x.abs() < 0.01].abs().max() < 0.001  # fine steps near zero: the point of mu-law


def test_preemphasis_inverts():
    x = torch.randn(2, 500) * 0.1
    y = audio.preemphasis(x, 0.85)
    np.testing.assert_allclose(audio.deemphasis(y.numpy(), 0.85), x.numpy(), atol=1e-5)


def test_save_is_atomic_and_refuses_overwrite(tmp_path):
    path = tmp_path / "out.wav"
    audio.save(path, np.zeros(100, np.float32) + 0.1)
    with pytest.raises(FileExistsError):
        audio.save(path, np.zeros(100, np.float32), force=False)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_a_wav_cut_short_is_read_with_a_warning_naming_it(tmp_path, caplog):
    import soundfile as sf

    from vqspeech import audio as audio_io

    sf.write(tmp_path / "full.wav", 0.1 * np.sin(np.arange(16000) / 5.0).astype(np.float32), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        wav = audio_io.load(tmp_path / "full.wav")
    assert len(wav) == 16000 and not caplog.records
    with caplog.at_level("WARNING"):
        wav = audio_io.load(tmp_path / "cut.wav")
        blocks = sum(len(b) for b in audio_io.read_blocks(tmp_path / "cut.wav", 16000))
    assert len(wav) == blocks < 8000
    assert len(caplog.records) == 2 and all("cut.wav: truncated" in r.getMessage() for r in caplog.records)
