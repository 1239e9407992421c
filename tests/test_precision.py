"""bfloat16 inference (vqspeech/precision.py): used only where native or unless turned off, and close to float32 where
used (the encoder's strided convolutions, the parallel decoder)."""

import numpy as np
import pytest
import torch

from vqspeech import precision
from vqspeech.models.encoding import Encoded
from tests.conftest import synthetic_voice, tiny_codec_model


@pytest.fixture
def bf16(monkeypatch):
    """Pretend the CPU has bfloat16 instructions (PyTorch emulates them where it has not: slow, the same numbers)."""
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: True)
    monkeypatch.delenv(precision.FLOAT32_ENV, raising=False)


def autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_autocast_only_where_native_and_not_turned_off(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(precision.FLOAT32_ENV, raising=False)
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: False)
    with precision.inference_autocast(cpu):
        assert not autocast_on()  # emulated bfloat16 would be 16x slower: float32
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: True)
    with precision.inference_autocast(cpu):
        assert autocast_on()
    monkeypatch.setenv(precision.FLOAT32_ENV, "1")
    with precision.inference_autocast(cpu):
        assert not autocast_on()
    assert not precision.native_bf16(torch.device("meta"))


def test_encoder_infer_is_forward_in_float32_and_close_in_bf16(monkeypatch, bf16):
    model, _ = tiny_codec_model()
    wav = torch.from_numpy(synthetic_voice(1.0, 150, 0))[None, None]
    with torch.no_grad():
        exact = model.encoder(wav)
    monkeypatch.setenv(precision.FLOAT32_ENV, "1")
    torch.testing.assert_close(model.encoder.infer(wav), exact, rtol=0, atol=0)
    monkeypatch.delenv(precision.FLOAT32_ENV)
    fast = model.encoder.infer(wav)
    assert fast.dtype == torch.float32
    assert not torch.equal(fast, exact)  # bfloat16 did run
    assert ((fast - exact).norm() / exact.norm()).item() < 0.02


def test_parallel_decoding_in_bf16_is_close_to_float32(monkeypatch, bf16):
    model, _ = tiny_codec_model(parallel_decoder=True)
    encoded = model.encode(synthetic_voice(1.0, 150, 1))
    assert isinstance(encoded, Encoded)

    def decode():
        return model.decode(encoded, "alice", generator=torch.Generator().manual_seed(0), decoder="parallel")

    fast = decode()
    monkeypatch.setenv(precision.FLOAT32_ENV, "1")
    exact = decode()
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert not np.array_equal(fast, exact)
    snr = 10 * np.log10(np.sum(exact.astype(np.float64) ** 2) / np.sum((fast - exact).astype(np.float64) ** 2))
    assert snr > 25, snr
