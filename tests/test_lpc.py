"""The LPC WaveNet (models/lpc.py): linear prediction from a rendering, the excitation as the WaveNet's target,
the sampler's all-pole recursion in the compiled kernel and the reference loop alike, and train-wavenet with it."""

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from vqspeech import audio, checkpoint
from vqspeech.models import fast_sampler, lpc
from vqspeech.train.loop import Trainer
from vqspeech.train.wavenet_loop import WaveNetObjective
from tests.conftest import synthetic_voice, wavenet_setup
from tests.test_wavenet_training import _base, _config


def test_coefficients_recover_an_all_pole_process():
    # x[t] = 1.3 x[t-1] - 0.8 x[t-2] + noise: a resonance near 1.5 kHz at 16 kHz.
    x = lfilter([1.0], [1.0, -1.3, 0.8], np.random.default_rng(0).standard_normal(64 * 200)) * 0.05
    c = lpc.coefficients(torch.tensor(x, dtype=torch.float32)[None], 64, 2, 16000)
    assert c.shape == (1, 200, 2)
    mean = c[0, 10:-10].mean(0)  # frames whose window lies inside the signal
    assert mean.tolist() == pytest.approx([1.3, -0.8], abs=0.05)
    # What is left after the prediction is as small as the true coefficients leave it (the white driving noise).
    p = lpc.predict(torch.tensor(x, dtype=torch.float32)[None], c, 64)[0].numpy()
    ideal = x[2:] - 1.3 * x[1:-1] + 0.8 * x[:-2]
    assert ((x - p)[2:] ** 2).mean() < 1.05 * (ideal**2).mean()


def test_the_excitation_target_resynthesises_the_signal():
    x = audio.preemphasis(torch.from_numpy(synthetic_voice(0.2, 140, 0))[None], 0.85)
    c = lpc.coefficients(x, 64, 16, 16000)
    target, inputs = lpc.teacher_forcing(x, c, 64, 8)
    assert target.shape == x.shape and inputs.shape == (1, 3, x.shape[1])
    assert inputs[0, 0, 0] == inputs[0, 2, 0] == 128  # mid-scale before the first sample
    assert (inputs[0, 0, 1:] == audio.mu_law_encode(x, 8)[0, :-1]).all()  # x[t - 1]
    assert (inputs[0, 2, 1:] == target[0, :-1]).all()  # e[t - 1]
    # The all-pole filter run on the quantised excitation gives the signal back, up to the excitation's 8-bit
    # quantisation (shaped by the filter): far below the signal's own level.
    y = lpc.synthesise(target.numpy(), c.numpy(), 64, 8)
    error = np.sqrt(((y - x.numpy()) ** 2).mean() / (x.numpy() ** 2).mean())
    assert error < 0.1
    # A frame's coefficients matter: the same excitation through flat coefficients is another signal.
    flat = lpc.synthesise(target.numpy(), np.zeros_like(c.numpy()), 64, 8)
    assert np.sqrt(((flat - x.numpy()) ** 2).mean() / (x.numpy() ** 2).mean()) > 0.3


@pytest.mark.skipif(not fast_sampler.available(), reason="numba is not installed")
@pytest.mark.parametrize("pitch_lag", [False, True])
def test_compiled_and_reference_sampling_agree_with_the_lpc_feedback(pitch_lag):
    model, encoded, cond, lf0, rendering = wavenet_setup(lpc_order=8, pitch_lag=pitch_lag)
    with torch.no_grad():
        coeffs, lags = model.lpc_inputs(rendering, encoded.pitch[None], lf0)
        assert (lags is not None) == pitch_lag and (not pitch_lag or (lags > 0).any())
        inputs = model.wavenet_inputs(encoded.pitch[None], lf0, rendering)
        runs = {m: model.generate(cond, inputs, generator=torch.Generator().manual_seed(2), method=m, lpc=coeffs,
                                  lags=lags) for m in ("fast", "reference")}
    # The feedback (x[t-1] and p[t] computed from the samples drawn) makes one disagreement spread: so most
    # must agree exactly, which they do only if both loops feed the same three inputs.
    assert (runs["fast"] != runs["reference"]).float().mean() < 0.01
    with pytest.raises(ValueError, match="coefficients"):
        fast_sampler.generate(model.decoder, cond, inputs, torch.rand(1, cond.shape[-1] * 64, dtype=torch.float64))


def test_train_wavenet_learns_the_excitation_and_decodes(manifest, tmp_path):
    base_path = _base(manifest, tmp_path)
    trainer = Trainer(_config(manifest, tmp_path / "wn", 80, base_path, lpc_order=8), objective=WaveNetObjective)
    model = trainer.model
    assert model.decoder.embed.num_embeddings == 3 * 256
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    before = trainer.compute(model.decoder, batch)[0]["recon/ce"].item()
    trainer.fit()
    after = trainer.compute(model.decoder, batch)[0]["recon/ce"].item()
    assert after < before - 0.2, (before, after)  # from uniform (ln 256 = 5.55 nats)
    shipped = tmp_path / "shipped.pt"
    checkpoint.export_model(checkpoint.latest_checkpoint(tmp_path / "wn"), shipped)
    loaded = checkpoint.load_model(shipped)
    assert loaded.config.decoder.lpc_order == 8
    wav = synthetic_voice(0.25, 150, 3)
    encoded = loaded.encode(wav)
    out = loaded.decode(encoded, "alice", decoder="autoregressive", generator=torch.Generator().manual_seed(0))
    assert out.shape == wav.shape and np.isfinite(out).all() and 0 < abs(out).max() <= 1.0
    again = loaded.decode(encoded, "alice", decoder="autoregressive", generator=torch.Generator().manual_seed(0))
    assert abs(again - out).max() == 0


def test_pitch_lags_feed_the_excitation_one_period_back():
    f0 = torch.tensor([[0.0, 100.0, 100.0, 200.0, 0.0]])
    lags = lpc.pitch_lags(f0, 16000)
    assert lags.tolist() == [[0, 160 - lpc.LAG_LEAD, 160 - lpc.LAG_LEAD, 80 - lpc.LAG_LEAD, 0]]
    classes = torch.arange(300)[None]
    lag = torch.tensor([[0] * 100 + [50] * 200])
    back = lpc.lagged(classes, lag, fill=128)
    assert (back[0, :100] == 128).all() and (back[0, 100:] == torch.arange(50, 250)).all()
    # In teacher forcing the fourth stream is that of the true excitation.
    x = audio.preemphasis(torch.from_numpy(synthetic_voice(0.2, 140, 0))[None], 0.85)
    c = lpc.coefficients(x, 64, 8, 16000)
    steady = torch.full(x.shape, 100, dtype=torch.long)
    target, inputs = lpc.teacher_forcing(x, c, 64, 8, steady)
    assert inputs.shape[1] == 4 and (inputs[0, 3, 100:] == target[0, :-100]).all()


def test_an_lpc_wavenet_branches_into_the_pitch_lag_one_exactly(manifest, tmp_path):
    base_path = _base(manifest, tmp_path)
    Trainer(_config(manifest, tmp_path / "wn", 5, base_path, lpc_order=8), objective=WaveNetObjective).fit()
    lpc_path = checkpoint.latest_checkpoint(tmp_path / "wn")
    first = Trainer(_config(manifest, tmp_path / "a", 1, lpc_path, lpc_order=8), objective=WaveNetObjective)
    branch = Trainer(_config(manifest, tmp_path / "b", 1, lpc_path, lpc_order=8, pitch_lag=True), objective=WaveNetObjective)
    assert branch.model.decoder.embed.num_embeddings == 4 * 256
    assert branch.model.decoder.embed.weight[3 * 256:].abs().sum() == 0  # the new stream starts silent
    batch = first.valid_set.fixed_batches(2, 1)[0]
    ce = []
    for trainer in (first, branch):
        torch.manual_seed(0)  # the same rendering noise, so the same coefficients
        ce.append(trainer.compute(trainer.model.decoder, batch)[0]["recon/ce"].item())
    assert ce[0] == pytest.approx(ce[1], rel=1e-5)
