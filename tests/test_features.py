import numpy as np
import torch

from vqspeech import features
from tests.conftest import synthetic_voice


def test_rendered_f0_holds_its_value_up_to_a_voicing_edge():
    z = torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0, -0.5, -0.5]])
    voiced = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]])
    f0 = features.f0_at_sample_rate(z, voiced, torch.tensor([float(np.log(100.0))]), torch.tensor([1.0]), hop=8)[0]
    high, low = 100 * np.exp(0.5), 100 * np.exp(-0.5)
    assert (f0[:8] == 0).all() and (f0[24:40] == 0).all()  # unvoiced frames stay silent
    torch.testing.assert_close(f0[8:24], torch.full((16,), high))  # no sag towards 0 Hz at either edge
    torch.testing.assert_close(f0[40:56], torch.full((16,), low))


def test_pitch_of_a_known_tone():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    track = features.extract_pitch(tone, 256)
    assert track.f0.shape == (63,)
    assert track.voiced[2:-2].all()
    np.testing.assert_allclose(track.f0[2:-2], 150, rtol=0.01)


def test_quantised_pitch_round_trips_within_one_step():
    track = features.extract_pitch(synthetic_voice(1.0, 160, 0), 256)
    mean, std = track.log_stats()
    q = features.quantise_pitch(track, mean, std, levels=32, z_range=3.0)
    z, voiced = features.dequantise_pitch(torch.from_numpy(q), 32, 3.0)
    assert ((q > 0) == track.voiced).all()
    true_z = (np.log(track.f0[track.voiced]) - mean) / std
    assert np.abs(z.numpy()[track.voiced] - np.clip(true_z, -3, 3)).max() <= 6 / 30 / 2 + 1e-6
