"""The compiled sampler against the reference PyTorch step loop (`WaveNet.step`), on tiny models."""

import pytest
import torch

from vqspeech.models import fast_sampler
from vqspeech.models.vqvae import VQSpeech

pytestmark = pytest.mark.skipif(not fast_sampler.available(), reason="numba not installed")


def tiny_decoder_inputs(config, batch: int, frames: int, pitch: bool = True, seed: int = 0):
    """A tiny model with repeated dilations (1, 2, 4, 1, 2, 4: two layers share each ring-buffer size)
    and a sharpened output layer, so that sampled classes depend strongly on the logits."""
    torch.manual_seed(seed)
    c = config.model
    c.pitch = pitch
    c.decoder.layers, c.decoder.dilation_cycle = 6, 3
    model = VQSpeech(c).eval()
    with torch.no_grad():
        model.decoder.out2.weight.mul_(20.0)
        cond = torch.randn(batch, c.decoder.cond_channels, frames)
        z = torch.randn(batch, frames // c.pitch_frames).clamp(-2, 2)
        voiced = (torch.rand(batch, frames // c.pitch_frames) > 0.3).float()
        from vqspeech import features
        f0 = features.f0_at_sample_rate(z, voiced, torch.full((batch,), 5.0), torch.full((batch,), 0.2), c.pitch_hop)
        exc = features.excitation(f0, c.pitch_harmonics) if pitch else None
    return model, cond, exc


def reference_logits(decoder, cond, exc, prev):
    state = decoder.init_state(cond, exc)
    with torch.no_grad():
        return torch.stack([decoder.step(prev[:, t], state) for t in range(prev.shape[1])], -1)


@pytest.mark.parametrize("pitch", [True, False])
def test_teacher_forced_logits_match_reference_step(tiny_config, pitch):
    model, cond, exc = tiny_decoder_inputs(tiny_config, batch=2, frames=8, pitch=pitch)
    prev = torch.randint(0, 256, (2, 8 * model.config.hop))
    expected = reference_logits(model.decoder, cond, exc, prev)
    got = fast_sampler.teacher_forced_logits(model.decoder, cond, exc, prev)
    assert got.shape == expected.shape == (2, 256, prev.shape[1])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_free_running_fast_equals_reference(tiny_config, temperature):
    """Same generator seed -> same uniforms -> the same classes, sample for sample (512 samples)."""
    model, cond, exc = tiny_decoder_inputs(tiny_config, batch=2, frames=8)
    runs = {m: model.generate(cond, exc, temperature, torch.Generator().manual_seed(7), method=m)
            for m in ("fast", "reference")}
    fast, ref = runs["fast"], runs["reference"]
    assert fast.shape == ref.shape == (2, 512)
    assert fast.unique().numel() > (1 if temperature == 0 else 20)  # really driven by the logits and uniforms
    assert torch.equal(fast, ref), f"first mismatch at sample {(fast != ref).any(0).nonzero()[0].item()}"


def test_uniforms_drive_the_samples(tiny_config):
    """Different generator seeds must give different classes (the kernel does use u)."""
    model, cond, exc = tiny_decoder_inputs(tiny_config, batch=1, frames=4)
    a = model.generate(cond, exc, 1.0, torch.Generator().manual_seed(1), method="fast")
    b = model.generate(cond, exc, 1.0, torch.Generator().manual_seed(2), method="fast")
    assert (a != b).float().mean() > 0.5


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_equals_single_streams(tiny_config, threads):
    """B=3 in one call (streams split over `threads`) equals three B=1 calls with the same uniforms."""
    model, cond, exc = tiny_decoder_inputs(tiny_config, batch=3, frames=8)
    u = fast_sampler.draw_uniforms(3, 8 * model.config.hop, torch.Generator().manual_seed(3))
    batched = fast_sampler.generate(model.decoder, cond, exc, u, threads=threads)
    singles = torch.cat([fast_sampler.generate(model.decoder, cond[b:b + 1], exc[b:b + 1], u[b:b + 1], threads=1)
                         for b in range(3)])
    assert torch.equal(batched, singles)
    assert not torch.equal(batched[0], batched[1])


def test_reference_sampler_is_inverse_cdf():
    """sample_classes picks the first class whose cumulative probability exceeds u."""
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 5))
    u = torch.tensor([0.0, 0.09, 0.11, 0.65, 0.999], dtype=torch.float64)
    assert fast_sampler.sample_classes(logits, u, 1.0).tolist() == [0, 0, 1, 3, 3]
    assert fast_sampler.sample_classes(logits, u, 0.0).tolist() == [3] * 5


def test_bad_method_and_uniforms_are_refused(tiny_config):
    model, cond, exc = tiny_decoder_inputs(tiny_config, batch=1, frames=4)
    with pytest.raises(ValueError, match="unknown generation method"):
        model.generate(cond, exc, method="magic")
    with pytest.raises(ValueError, match="uniforms must be"):
        fast_sampler.generate(model.decoder, cond, exc, torch.rand(1, 5, dtype=torch.float64))
    for method in ("fast", "reference"):
        with pytest.raises(ValueError, match="temperature"):
            model.generate(cond, exc, temperature=-1.0, method=method)

