"""The parallel decoder: its pulse source, its training on a frozen VQ-VAE, and decoding with it."""

import math

import pytest
import torch

from vqspeech.config import load_config
from vqspeech.models.parallel import ParallelDecoder, minimum_phase, pulse_train
from vqspeech import checkpoint
from vqspeech.train.loop import Trainer
from vqspeech.train.parallel_loop import ParallelObjective
from tests.conftest import DEBUG_OVERLAY, synthetic_voice


def test_pulse_train_equals_the_sum_of_its_harmonics():
    f0 = torch.cat([torch.full((1, 3000), 120.0), torch.zeros(1, 500), torch.linspace(90, 420, 4000)[None]], 1)
    phase = torch.remainder(torch.cumsum(2 * math.pi * f0.double() / 16000, -1), 2 * math.pi)
    k = torch.arange(1, 161, dtype=torch.float64)[:, None]
    ref = (torch.cos(k * phase) * (k * f0.double() <= 8000)).sum(0, keepdim=True) * (f0 > 0)
    torch.testing.assert_close(pulse_train(f0, 16000, 160).double(), ref, atol=1e-4, rtol=0)
    assert pulse_train(f0, 16000, 160)[0, 3000:3500].abs().max() == 0  # unvoiced: no pulses


def test_minimum_phase_keeps_the_magnitude_and_is_causal():
    # A smooth random log-magnitude envelope, as the decoder's head predicts per frame.
    log_mag = torch.nn.functional.avg_pool1d(torch.randn(3, 1, 257 + 16), 17, stride=1)[:, 0, :, None] * 3
    response = minimum_phase(log_mag)
    torch.testing.assert_close(response.abs().log(), log_mag, atol=1e-4, rtol=0)
    impulse = torch.fft.irfft(response[..., 0], n=512)  # [3, 512]
    energy = impulse.pow(2)
    assert (energy[:, :64].sum(1) / energy.sum(1)).min() > 0.9  # front-loaded: a causal, decaying response
    assert (energy[:, -64:].sum(1) / energy.sum(1)).max() < 0.01  # nothing before time 0 (wrapped to the end)


def test_shapes_and_pitch_follow():
    config = load_config(DEBUG_OVERLAY).model
    dec = ParallelDecoder(config.parallel, 16, config.hop, 16000)
    cond = torch.randn(2, 16, 40)
    f0 = torch.full((2, 40 * config.hop), 200.0)
    y = dec(cond, f0, noise=torch.zeros(2, 40 * config.hop))
    assert y.shape == (2, 40 * config.hop)
    # With the noise branch silenced the output is the filtered pulse train: periodic at 1/f0.
    spec = torch.fft.rfft(y[0, 256:-256]).abs()
    freqs = torch.fft.rfftfreq(y.shape[1] - 512, 1 / 16000)
    assert abs(freqs[spec.argmax()].item() % 200) < 5 or abs(freqs[spec.argmax()].item() % 200 - 200) < 5


def test_voice_film_starts_as_the_identity_and_then_reads_the_voice():
    import dataclasses


    config = load_config(DEBUG_OVERLAY).model
    torch.manual_seed(0)
    plain = ParallelDecoder(config.parallel, 16, config.hop, 16000)
    film = ParallelDecoder(dataclasses.replace(config.parallel, voice_film=True), 16, config.hop, 16000, voice_dim=8)
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("film.") for k in missing)
    cond, f0, noise = torch.randn(2, 16, 40), torch.full((2, 40 * config.hop), 150.0), torch.randn(2, 40 * config.hop)
    voices = torch.randn(2, 8)
    # A model given FiLM layers renders exactly as before, whatever the voice, until they train.
    torch.testing.assert_close(film(cond, f0, noise, voice=voices), plain(cond, f0, noise), rtol=0, atol=0)
    with pytest.raises(ValueError, match="voice"):
        film(cond, f0, noise)
    torch.nn.init.normal_(film.film[0].weight, std=0.5)
    same_cond = cond[:1].expand(2, -1, -1)
    out = film(same_cond, f0, noise[:1].expand(2, -1), voice=voices)
    assert (out[0] - out[1]).abs().max() > 1e-3  # same codes, two voices: two renderings


def _config(manifest, run, steps, base=""):
    return load_config(DEBUG_OVERLAY, overrides={
        "data": {"manifest": str(manifest)},
        "train": {"run_dir": str(run), "steps": steps, "checkpoint_every": steps, "val_every": steps,
                  "eval_every": steps, "base_model": str(base), "lr": 3e-3, "warmup_steps": 1}})


def test_trains_on_frozen_vqvae_and_decodes(manifest, tmp_path):
    base = Trainer(_config(manifest, tmp_path / "base", 3))
    base.fit()
    base_path = checkpoint.latest_checkpoint(tmp_path / "base")
    trainer = Trainer(_config(manifest, tmp_path / "par", 40, base_path), objective=ParallelObjective)
    frozen = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.startswith("parallel.")}
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    torch.manual_seed(0)
    before = trainer.compute(trainer.model.parallel, batch)[0]["recon/mrstft"].item()
    trainer.fit()
    torch.manual_seed(0)
    after = trainer.compute(trainer.model.parallel, batch)[0]["recon/mrstft"].item()
    assert after < 0.8 * before, (before, after)
    for k, v in trainer.model.state_dict().items():
        if k in frozen:
            torch.testing.assert_close(v, frozen[k], msg=f"{k} moved: the VQ-VAE must stay frozen")
    model = checkpoint.load_model(checkpoint.latest_checkpoint(tmp_path / "par"))
    assert model.parallel is not None
    wav = synthetic_voice(0.5, 150, 3)
    out = model.decode(model.encode(wav), "alice", decoder="parallel", generator=torch.Generator().manual_seed(0))
    assert out.shape == wav.shape and 0 < abs(out).max() <= 1.0
    assert (tmp_path / "par" / "eval.csv").exists()

    # Export: weights only, float16, the training cost of both parts recorded; it loads and decodes the same.
    shipped = tmp_path / "shipped.pt"
    cost = checkpoint.export_model(checkpoint.latest_checkpoint(tmp_path / "par"), shipped)
    assert cost == checkpoint.load_checkpoint(shipped)["training_cost"]
    assert cost["vqvae"]["steps"] == 3 and cost["parallel"]["steps"] == 40
    assert shipped.stat().st_size < 0.5 * checkpoint.latest_checkpoint(tmp_path / "par").stat().st_size
    small = checkpoint.load_model(shipped)
    assert small.default_decoder == "parallel" and next(small.parameters()).dtype == torch.float32
    again = small.decode(small.encode(wav), "alice", generator=torch.Generator().manual_seed(0))
    assert abs(again - out).max() < 0.05 * abs(out).max()


def test_refuses_missing_base_model(manifest, tmp_path):

    with pytest.raises(ValueError, match="base_model"):
        Trainer(_config(manifest, tmp_path / "par", 2), objective=ParallelObjective)


def test_conversion_loss_trains_the_decoder_toward_the_target_voice(manifest, tmp_path):
    from vqspeech.models.speaker_classifier import train_speaker_classifier

    base = Trainer(_config(manifest, tmp_path / "base", 3))
    base.fit()
    config = _config(manifest, tmp_path / "par", 40, checkpoint.latest_checkpoint(tmp_path / "base"))
    config.train.speaker_loss_weight = 1.0
    config.train.speaker_classifier_steps = 60
    config.model.parallel.voice_film = True  # the run decides the parallel decoder's shape; FiLM starts at zero
    trainer = Trainer(config, objective=ParallelObjective)
    judge = trainer.objective.speaker_classifier
    assert judge is not None and not any(p.requires_grad for p in judge.parameters())
    # The judge tells the two test voices apart on held-out audio (a 210 Hz and a 110 Hz voice).
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    assert (judge(batch["wav"]).argmax(-1) == batch["speaker"]).all()
    # Rebuilt identically from the seed (a resumed run gets the same judge).
    again = train_speaker_classifier(trainer.train_set, None, 2, 60, seed=config.train.seed)
    torch.testing.assert_close(again(batch["wav"]), judge(batch["wav"]))
    torch.manual_seed(0)
    before = trainer.compute(trainer.model.parallel, batch)[0]["convert/speaker"].item()
    trainer.fit()
    torch.manual_seed(0)
    losses, metrics = trainer.compute(trainer.model.parallel, batch)
    assert losses["convert/speaker"].item() < before and 0 <= metrics["convert/target_accuracy"] <= 1
    assert all(layer.weight.abs().max() > 0 for layer in trainer.model.parallel.film)  # the voice path trained


def test_joint_training_moves_the_codes_but_never_the_wavenet(manifest, tmp_path):
    base = Trainer(_config(manifest, tmp_path / "base", 3))
    base.fit()
    config = _config(manifest, tmp_path / "joint", 30, checkpoint.latest_checkpoint(tmp_path / "base"))
    config.train.joint = True
    trainer = Trainer(config, objective=ParallelObjective)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        loss_before = trainer.compute(trainer.model, batch)[0]["recon/mrstft"].item()
    trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("decoder.")), "the WaveNet moved"
    assert not torch.equal(after["encoder.net.0.weight"], before["encoder.net.0.weight"])
    assert not torch.equal(after["quantizer.embed_sum"], before["quantizer.embed_sum"])  # EMA codebook updates
    torch.manual_seed(0)
    with torch.no_grad():
        losses = trainer.compute(trainer.model, batch)[0]
    assert losses["recon/mrstft"].item() < loss_before and "vq/commit" in losses


def test_joint_training_with_frozen_codes_keeps_the_codes_and_the_fingerprint(manifest, tmp_path):
    from vqspeech.codec.api import fingerprint

    Trainer(_config(manifest, tmp_path / "base", 3)).fit()
    config = _config(manifest, tmp_path / "frozen", 10, checkpoint.latest_checkpoint(tmp_path / "base"))
    config.train.joint = config.train.freeze_codes = True
    trainer = Trainer(config, objective=ParallelObjective)
    before, print_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}, fingerprint(trainer.model)
    trainer.fit()
    after = trainer.model.state_dict()
    codes_side = [k for k in before if k.startswith(("encoder.", "quantizer."))]
    assert codes_side and all(torch.equal(after[k], before[k]) for k in codes_side)  # EMA buffers included
    assert fingerprint(trainer.model) == print_before
    for part in ("cond_net.", "parallel."):  # the conditioning trains, and the decoder
        assert not all(torch.equal(after[k], v) for k, v in before.items() if k.startswith(part)), part
    config.train.code_adversary_weight = 0.1  # an adversary would push the frozen encoder
    config.train.run_dir = str(tmp_path / "adversary")
    with pytest.raises(ValueError, match="freeze_codes"):
        Trainer(config, objective=ParallelObjective)


def test_gradient_reversal_negates_and_scales():
    from vqspeech.models.speaker_adversary import reverse_gradient

    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.25)
    torch.testing.assert_close(y, x)
    (y * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.25 * torch.arange(4.0).expand(3, 4))


def test_code_adversary_pushes_the_encoder_against_its_classifier_and_resumes(manifest, tmp_path):
    from torch.nn import functional as F

    base = Trainer(_config(manifest, tmp_path / "base", 3))
    base.fit()
    base_path = checkpoint.latest_checkpoint(tmp_path / "base")
    config = _config(manifest, tmp_path / "adv", 6, base_path)
    config.train.code_adversary_weight = 0.5
    with pytest.raises(ValueError, match="joint"):
        Trainer(config, objective=ParallelObjective)
    config.train.joint = True
    trainer = Trainer(config, objective=ParallelObjective)
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    # The encoder's gradient from the adversary's loss is the classifier's own gradient, negated and scaled.
    model, adversary = trainer.model, trainer.objective.adversary
    grads = []
    for reversal in (0.5, -1.0):  # -1: a plain (unreversed) gradient, for reference
        model.zero_grad()
        vq = model.quantizer(model.encoder(batch["wav"][:, None]))
        F.cross_entropy(adversary(vq.quantized, reversal), batch["speaker"]).backward()
        grads.append(model.encoder.net[0].weight.grad.clone())
    assert grads[1].abs().max() > 0
    torch.testing.assert_close(grads[0], -0.5 * grads[1])
    before = {k: v.clone() for k, v in adversary.state_dict().items()}
    trainer.fit()
    losses, metrics = trainer.compute(trainer.model, batch)
    assert "adversary/speaker" in losses and 0 <= metrics["adversary/accuracy"] <= 1
    trained = adversary.state_dict()
    assert not torch.equal(trained["out.weight"], before["out.weight"]), "the adversary did not train"

    # A resumed run takes the adversary back from the checkpoint, not a fresh one.
    config.train.steps = 7
    again = Trainer(config, resume=True, objective=ParallelObjective)
    for k, v in trained.items():
        torch.testing.assert_close(again.objective.adversary.state_dict()[k], v)
    # Its gradients are clipped too, on their own budget (the model's norm is reported apart).
    again.config.train.grad_clip = 1e-3
    _, step_metrics = again.train_step(batch)
    assert step_metrics["train/adversary_grad_norm"] > 1e-3 and "train/grad_norm" in step_metrics
    clipped = torch.cat([p.grad.flatten() for p in again.objective.adversary.parameters() if p.grad is not None]).norm()
    assert clipped <= 1e-3 * 1.01
    config.train.code_adversary_weight = 0.0  # nor the other way round
    with pytest.raises(checkpoint.CheckpointError, match="has a code adversary"):
        Trainer(config, resume=True, objective=ParallelObjective)
    # A run started without one cannot be resumed with one (its optimizer state would not line up).
    plain = _config(manifest, tmp_path / "plain", 2, base_path)
    plain.train.joint = True
    Trainer(plain, objective=ParallelObjective).fit()
    plain.train.code_adversary_weight, plain.train.steps = 0.5, 3
    with pytest.raises(checkpoint.CheckpointError, match="no code adversary"):
        Trainer(plain, resume=True, objective=ParallelObjective)
