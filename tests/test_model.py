import torch

from vqspeech.models.vqvae import VQSpeech
from tests.conftest import synthetic_voice


def tiny_batch(config, batch=2, seed=0):
    from vqspeech import features

    T = config.data.crop_samples
    hop = config.model.pitch_hop
    wavs, pitches = [], []
    for b in range(batch):
        w = synthetic_voice(T / 16000, 120 + 60 * b, seed + b)
        track = features.extract_pitch(w, hop)
        mean, std = track.log_stats()
        wavs.append(torch.from_numpy(w))
        pitches.append(torch.from_numpy(features.quantise_pitch(track, mean, std, config.model.pitch_levels, config.model.pitch_z_range)))
    return {"wav": torch.stack(wavs), "speaker": torch.arange(batch) % config.model.n_speakers,
            "pitch": torch.stack(pitches), "lf0": torch.tensor([[5.0, 0.2]] * batch)}


def test_shapes(tiny_config):
    c = tiny_config.model
    model = VQSpeech(c)
    batch = tiny_batch(tiny_config)
    z = model.encoder(batch["wav"][:, None])
    assert c.hop == 64 and z.shape == (2, c.latent_dim, tiny_config.data.crop_samples // c.hop)
    losses, metrics = model(**batch)
    assert set(losses) == {"recon/ce", "vq/commit", "aux/mel"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    # An untrained 256-way softmax starts near log(256) nats.
    assert abs(losses["recon/ce"].item() - torch.log(torch.tensor(256.0)).item()) < 0.5


def test_cached_sampler_matches_parallel_forward(tiny_config):
    """Teacher-forced, the ring-buffer step loop must give the parallel pass's logits."""
    torch.manual_seed(0)
    c = tiny_config.model
    c.decoder.layers, c.decoder.dilation_cycle = 6, 3  # repeated dilations exercise the buffers
    model = VQSpeech(c).eval()
    batch = tiny_batch(tiny_config)
    with torch.no_grad():
        vq = model.quantizer(model.encoder(batch["wav"][:, None]))
        cond = model.condition(vq.quantized, model.speaker_voice(batch["speaker"]), batch["pitch"])
        exc = model.excitation(batch["pitch"], batch["lf0"])
        prev = torch.randint(0, 256, batch["wav"].shape)
        parallel = model.decoder(prev, cond, exc)
        state = model.decoder.init_state(cond, exc)
        stepped = torch.stack([model.decoder.step(prev[:, t], state) for t in range(prev.shape[1])], -1)
    torch.testing.assert_close(stepped, parallel, atol=1e-5, rtol=1e-5)


def test_tiny_model_learns(tiny_config):
    """On a few seconds of audio the loss must fall well below the entropy of the target classes' own
    histogram: the best a decoder that ignores context and conditioning can do."""
    from vqspeech import audio

    torch.manual_seed(0)
    tiny_config.data.crop_samples = 4096
    model = VQSpeech(tiny_config.model)
    batch = tiny_batch(tiny_config, batch=2)
    target = audio.mu_law_encode(audio.preemphasis(batch["wav"], tiny_config.model.preemphasis))
    p = torch.bincount(target.flatten(), minlength=256).float() / target.numel()
    marginal_entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(100):
        losses, _ = model(**batch)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert losses["recon/ce"].item() < marginal_entropy - 0.5, (marginal_entropy, losses["recon/ce"].item())


def test_encode_decode_round_trip_shapes(tiny_config):
    model = VQSpeech(tiny_config.model).eval()
    wav = synthetic_voice(0.3, 150, 0)
    enc = model.encode(wav)
    c = tiny_config.model
    assert enc.codes.shape == (model.pad_length(len(wav)) // c.hop,)
    assert enc.pitch.shape == (enc.codes.shape[0] // c.pitch_frames,)
    assert enc.pitch.max() < c.pitch_levels and (enc.pitch > 0).any()
    out = model.decode(enc, 1, generator=torch.Generator().manual_seed(0))
    assert out.shape == (len(wav),) and abs(out).max() <= 1.0


def test_local_instance_norm_removes_what_is_constant_and_keeps_chunked_codes_exact():
    """encoder.normalise_frames: a constant offset and scale per channel (a voice, a channel) do not reach the
    normalised latents, and the codec's chunked encoding still equals one-shot encoding (the window is context)."""
    import dataclasses

    from tests.conftest import tiny_codec_model
    from vqspeech.models import encoding
    from vqspeech.models.encoder import local_instance_norm

    z = torch.randn(1, 3, 200)
    shifted = 4.0 * z + torch.tensor([1.0, -2.0, 5.0])[None, :, None]
    torch.testing.assert_close(local_instance_norm(shifted, 32), local_instance_norm(z, 32), atol=1e-4, rtol=1e-4)
    _, config = tiny_codec_model(0)
    model, _ = tiny_codec_model(0, encoder=dataclasses.replace(config.model.encoder, normalise_frames=32))
    wav = synthetic_voice(1.2, 150, seed=3)
    small = dict(chunk_seconds=0.128, encoder_seconds=0.032, pitch_context_seconds=0.064)
    chunked = encoding.encode_stream(model, [wav[:5000], wav[5000:]], len(wav), **small).codes
    assert torch.equal(chunked, model.encode(wav).codes)
