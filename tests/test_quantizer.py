import torch

from vqspeech.config import QuantizerConfig
from vqspeech.models import vq_core
from vqspeech.models.quantizer import VectorQuantizer


def test_nearest_codes_and_perplexity():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    x = torch.tensor([[0.1, -0.1], [0.9, 1.2], [-0.8, 1.9], [0.0, 0.1]])
    assert vq_core.nearest_codes(x, codebook).tolist() == [0, 1, 2, 0]
    assert torch.isclose(vq_core.perplexity(torch.tensor([5.0, 0.0, 0.0])), torch.tensor(1.0))
    assert torch.isclose(vq_core.perplexity(torch.tensor([2.0, 2.0, 2.0, 2.0])), torch.tensor(4.0))


def test_straight_through_gradient_reaches_encoder_output():
    vq = VectorQuantizer(QuantizerConfig(codebook_size=16, ema=False, kmeans_init=False), dim=4)
    z = torch.randn(2, 4, 10, requires_grad=True)
    out = vq(z)
    assert out.quantized.shape == (2, 4, 10) and out.codes.shape == (2, 10)
    # Forward value is the codeword...
    torch.testing.assert_close(out.quantized, vq.codebook[out.codes].transpose(1, 2))
    # ...and the gradient of the reconstruction passes to z unchanged (straight-through).
    weight = torch.randn_like(z)
    (out.quantized * weight).sum().backward()
    torch.testing.assert_close(z.grad, weight)


def test_codebook_loss_trains_codebook_and_commitment_trains_encoder():
    vq = VectorQuantizer(QuantizerConfig(codebook_size=8, ema=False, kmeans_init=False, commitment=0.25), dim=3)
    z = torch.randn(1, 3, 20, requires_grad=True)
    out = vq(z)
    out.losses["vq/codebook"].backward(retain_graph=True)
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    assert z.grad is None  # the codebook loss does not move the encoder
    out.losses["vq/commit"].backward()
    assert z.grad.abs().sum() > 0


def test_ema_moves_codewords_to_their_members():
    torch.manual_seed(0)
    vq = VectorQuantizer(QuantizerConfig(codebook_size=2, decay=0.5, kmeans_init=False, dead_code_threshold=0.0), dim=2)
    vq.codebook.data = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    vq.embed_sum.copy_(vq.codebook.data)
    z = torch.tensor([[1.0, 1.0], [9.0, 9.5]]).t()[None].repeat(1, 1, 8)  # members near each codeword
    for _ in range(20):
        vq(z)
    torch.testing.assert_close(vq.codebook.data, torch.tensor([[1.0, 1.0], [9.0, 9.5]]), atol=1e-3, rtol=0)


def test_dead_codes_are_restarted_on_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(QuantizerConfig(codebook_size=8, kmeans_init=False, dead_code_threshold=0.5, decay=0.5), dim=2)
    vq.codebook.data = torch.full((8, 2), 100.0)
    vq.codebook.data[0] = 0.0
    vq.embed_sum.copy_(vq.codebook.data)
    z = torch.randn(1, 2, 64)
    for _ in range(5):
        out = vq(z)
    assert out.usage > 2 / 8  # the far-away codes came back to where the data is
    assert vq.codebook.data.abs().max() < 10


def test_kmeans_init_uses_the_codebook():
    torch.manual_seed(0)
    vq = VectorQuantizer(QuantizerConfig(codebook_size=16, kmeans_init=True), dim=2)
    z = torch.randn(4, 2, 64) * 3
    out = vq(z)
    assert bool(vq.initialised)
    assert out.perplexity > 8


def _two_clusters():
    z = torch.tensor([[1.0, 1.0], [9.0, 9.5]]).t()[None].repeat(1, 1, 8)  # [1, 2, 16]: members near each codeword
    return z + 0.01 * torch.randn(z.shape, generator=torch.Generator().manual_seed(0))


def test_soft_em_at_a_low_temperature_is_hard_em_and_at_a_high_one_shares_members():
    z = _two_clusters()
    final = {}
    for temperature in (1e-3, 1e3):
        torch.manual_seed(0)
        vq = VectorQuantizer(QuantizerConfig(codebook_size=2, method="soft_em", em_samples=20, em_temperature=temperature,
                                             decay=0.5, kmeans_init=False, dead_code_threshold=0.0), dim=2)
        vq.codebook.data = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
        vq.embed_sum.copy_(vq.codebook.data)
        for _ in range(20):
            out = vq(z)
        final[temperature] = vq.codebook.data.clone()
    # Cold: every draw is the nearest code, so each codeword moves to its own members (as hard EMA does).
    torch.testing.assert_close(final[1e-3], torch.tensor([[1.0, 1.0], [9.0, 9.5]]), atol=0.05, rtol=0)
    # Hot: draws are uniform, each codeword takes half of every cluster: both near the mean of all the data.
    assert (final[1e3] - torch.tensor([5.0, 5.25])).abs().max() < 1.0


def test_soft_em_trains_the_encoder_straight_through_and_infers_the_nearest_code():
    torch.manual_seed(0)
    vq = VectorQuantizer(QuantizerConfig(codebook_size=8, method="soft_em", em_samples=4, kmeans_init=False), dim=3)
    z = torch.randn(2, 3, 10, requires_grad=True)
    out = vq(z)
    weight = torch.randn_like(z)
    (out.quantized * weight).sum().backward()
    torch.testing.assert_close(z.grad, weight)
    assert not vq.codebook.requires_grad and "vq/commit" in out.losses
    vq.eval()
    out = vq(z)
    torch.testing.assert_close(out.codes, vq.encode(z))  # inference: the nearest code, as every method's bitstream
    torch.testing.assert_close(out.quantized, vq.codebook[out.codes].transpose(1, 2))


def test_gumbel_learns_codebook_and_encoder_by_gradient_and_anneals_its_temperature():
    torch.manual_seed(0)
    config = QuantizerConfig(codebook_size=8, method="gumbel", kmeans_init=False, gumbel_tau_start=1.0,
                             gumbel_tau_end=0.25, gumbel_anneal_steps=4, gumbel_kl_weight=0.5)
    vq = VectorQuantizer(config, dim=3)
    assert vq.codebook.requires_grad and vq.temperature() == 1.0
    z = torch.randn(2, 3, 10, requires_grad=True)
    out = vq(z)
    assert out.losses["vq/kl"] >= 0 and "vq/commit" not in out.losses
    (out.quantized.pow(2).sum() + out.losses["vq/kl"]).backward()
    assert z.grad.abs().sum() > 0 and vq.codebook.grad.abs().sum() > 0
    # Relaxed in training: a mixture of codewords, not one of them.
    assert not torch.allclose(out.quantized, vq.codebook[out.codes].transpose(1, 2))
    assert abs(vq.temperature() - 0.25 ** 0.25) < 1e-6  # one of four annealing steps, geometric
    for _ in range(5):
        vq(z)
    assert abs(vq.temperature() - 0.25) < 1e-6  # held at the end
    # The schedule is state: a model loaded from this one resumes where it stood.
    again = VectorQuantizer(config, dim=3)
    again.load_state_dict(vq.state_dict())
    assert again.temperature() == vq.temperature()
    vq.eval()
    out = vq(z)
    torch.testing.assert_close(out.codes, vq.encode(z))
    torch.testing.assert_close(out.quantized, vq.codebook[out.codes].transpose(1, 2))


def test_kl_to_uniform_is_zero_for_equal_distances_and_grows_as_one_code_wins():
    config = QuantizerConfig(codebook_size=4, method="gumbel", kmeans_init=False, gumbel_kl_weight=1.0)
    vq = VectorQuantizer(config, dim=2)
    vq.codebook.data = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    centre = torch.zeros(1, 2, 4)
    assert vq(centre).losses["vq/kl"].abs() < 1e-6
    assert vq(torch.tensor([[3.0], [0.0]]).repeat(1, 1, 4)).losses["vq/kl"] > 1.0


import pytest  # noqa: E402


@pytest.mark.parametrize("method", ["soft_em", "gumbel"])
def test_each_method_trains_a_model_that_saves_loads_and_encodes(method, manifest, tmp_path):
    from tests.conftest import DEBUG_OVERLAY, synthetic_voice
    from vqspeech import checkpoint
    from vqspeech.config import load_config
    from vqspeech.train.loop import Trainer

    config = load_config(DEBUG_OVERLAY, overrides={
        "model": {"quantizer": {"method": method}},
        "data": {"manifest": str(manifest)},
        "train": {"run_dir": str(tmp_path / "run"), "steps": 3, "checkpoint_every": 3, "val_every": 3, "eval_every": 0}})
    trainer = Trainer(config)
    before = trainer.model.quantizer.codebook.detach().clone()
    trainer.fit()
    assert not torch.equal(trainer.model.quantizer.codebook.detach(), before)  # EMA (soft_em) or Adam (gumbel) moved it
    model = checkpoint.load_model(checkpoint.latest_checkpoint(tmp_path / "run"))
    assert model.config.quantizer.method == method
    encoded = model.encode(synthetic_voice(0.3, 150, 0))
    assert encoded.codes.max() < config.model.quantizer.codebook_size


def test_the_training_rule_leaves_the_fingerprint_but_the_codebook_does_not():
    import dataclasses

    from tests.conftest import tiny_codec_model
    from vqspeech.models.vqvae import model_fingerprint

    model, config = tiny_codec_model(seed=0)
    soft, _ = tiny_codec_model(seed=0, quantizer=dataclasses.replace(config.model.quantizer, method="soft_em", em_samples=3))
    other, _ = tiny_codec_model(seed=1)
    # Inference takes the nearest code whatever trained the codebook: files made before the option stay readable.
    assert model_fingerprint(soft) == model_fingerprint(model) != model_fingerprint(other)
