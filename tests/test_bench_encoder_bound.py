"""bench/encoder_bound.py: the encoder's arithmetic, counted layer by layer."""

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.encoder_bound import layer_costs  # noqa: E402
from vqspeech.config import EncoderConfig  # noqa: E402
from vqspeech.models.encoder import Encoder  # noqa: E402


def test_layer_costs_count_every_multiply_add_of_strided_and_residual_convolutions():
    torch.set_num_threads(1)
    encoder = Encoder(EncoderConfig(channels=8, strides=(2, 2), kernel_size=4, residual_layers=1), latent_dim=5).eval()
    rows = layer_costs(encoder, torch.randn(1, 1, 64))
    # conv 1->8 k4 to 32 frames, conv 8->8 k4 to 16, residual 8->8 k3 and k1 at 16, the 1x1 to 5 latents at 16
    expected = 2 * (8 * 1 * 4 * 32 + 8 * 8 * 4 * 16 + 8 * 8 * 3 * 16 + 8 * 8 * 1 * 16 + 5 * 8 * 1 * 16)
    assert round(sum(g for _, g, _, _ in rows) * 1e9) == expected
    assert [name for name, g, _, _ in rows if g > 0] == ["Conv1d", "Conv1d", "ResidualBlock", "Conv1d"]
    assert all(seconds > 0 for _, _, seconds, _ in rows)
