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
