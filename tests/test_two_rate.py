"""Codes at two rates (models/two_rate.py): top codes one per pitch frame, bottom codes on the residual; both trained,
both carried in Encoded, chunked encoding still equal to one-shot, and a code space of its own (fingerprint)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import DEBUG_OVERLAY, synthetic_voice, tiny_codec_model
from vqspeech.config import QuantizerConfig, load_config
from vqspeech.models import encoding
from vqspeech.models.two_rate import TwoRateQuantizer
from vqspeech.models.vqvae import model_fingerprint


def two_rate_model(seed: int = 0, top: int = 16):
    """tiny_codec_model with codes at two rates; both codebooks set from latents of speech-like audio (the bottom one
    from the residuals), so that both levels' codes vary."""
    _, config = tiny_codec_model(seed)
    model = tiny_codec_model(seed, quantizer=dataclasses.replace(config.model.quantizer, top_codebook_size=top))[0]
    q = model.quantizer
    with torch.no_grad():
        z = model.encoder(torch.from_numpy(synthetic_voice(2.048, 140, seed))[None, None])
        zt = q.down(z)[0].T
        q.top.codebook.copy_(zt[torch.randperm(zt.shape[0])[:top]])
        residual = (z - q.up(q.top.lookup(q.top.encode(q.down(z)))))[0].T
        q.bottom.codebook.copy_(residual[torch.randperm(residual.shape[0])[: q.bottom.codebook.shape[0]]])
    return model


def test_both_levels_learn_and_the_decoders_read_their_sum():
    torch.manual_seed(0)
    q = TwoRateQuantizer(QuantizerConfig(codebook_size=32, top_codebook_size=8, kmeans_init=False), dim=6, rate=4).train()
    z = torch.randn(2, 6, 16, requires_grad=True)
    out = q(z)
    assert out.codes.shape == (2, 16) and out.top_codes.shape == (2, 4) and out.quantized.shape == (2, 6, 16)
    assert {"vq/commit", "top/commit"} <= set(out.losses)
    out.quantized.pow(2).sum().backward()
    # The decoders' gradient reaches the encoder and the top path (it would cancel without the detached residual).
    assert z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*q.down.parameters(), *q.up.parameters()])
    q.eval()
    codes, top = q.encode(z.detach())
    torch.testing.assert_close(q.lookup(codes, top), q(z.detach()).quantized)  # inference: the same sum, hard codes
    with pytest.raises(ValueError, match="even"):
        TwoRateQuantizer(QuantizerConfig(top_codebook_size=8), dim=6, rate=3)


def test_a_two_rate_model_encodes_decodes_and_chunks_exactly():
    model = two_rate_model()
    wav = synthetic_voice(1.2, 150, seed=3)
    enc = model.encode(wav)
    assert enc.top is not None and enc.top.shape[0] * model.config.pitch_frames == enc.codes.shape[0]
    assert model.decode(enc, "alice", decoder="autoregressive").shape == wav.shape
    small = dict(chunk_seconds=0.128, encoder_seconds=0.032, pitch_context_seconds=0.064)
    blocks = [wav[i : i + 1000] for i in range(0, len(wav), 1000)]
    chunked = encoding.encode_stream(model, blocks, len(wav), **small)
    assert torch.equal(chunked.codes, enc.codes) and torch.equal(chunked.top, enc.top)
    # The control: with only the encoder's own reach as context (the top path's left out) the codes change.
    short = encoding.encode_stream(model, [wav], len(wav), context=model.config.pitch_hop, **small)
    assert not (torch.equal(short.codes, enc.codes) and torch.equal(short.top, enc.top))
    with pytest.raises(ValueError, match="top codes too"):
        model.dequantise(enc.codes[None])
    one_rate, _ = tiny_codec_model(0)
    with pytest.raises(ValueError, match="one rate"):
        one_rate.dequantise(enc.codes[None], enc.top[None])
    # No .vqs version carries top codes, and no prior lays them out: both refuse in one line instead of writing files
    # that decode wrong.
    from vqspeech.codec import api
    from vqspeech.data.codes import TokenLayout

    with pytest.raises(ValueError, match="two rates"):
        api.encode_audio(model, wav, speaker="alice")
    with pytest.raises(ValueError, match="two rates"):
        TokenLayout.of(model.config)
    # A code space of its own; the one-rate model's fingerprint does not see the new (zero) setting.
    assert model_fingerprint(model) != model_fingerprint(one_rate) == model_fingerprint(tiny_codec_model(0)[0])


def test_a_two_rate_model_trains_saves_and_loads(manifest, tmp_path):
    from vqspeech import checkpoint
    from vqspeech.train.loop import Trainer

    config = load_config(DEBUG_OVERLAY, overrides={
        "model": {"quantizer": {"top_codebook_size": 16}},
        "data": {"manifest": str(manifest)},
        "train": {"run_dir": str(tmp_path / "run"), "steps": 3, "checkpoint_every": 3, "val_every": 3, "eval_every": 0}})
    trainer = Trainer(config)
    before = trainer.model.quantizer.top.codebook.detach().clone()
    trainer.fit()
    assert not torch.equal(trainer.model.quantizer.top.codebook.detach(), before)  # k-means, then EMA
    model = checkpoint.load_model(checkpoint.latest_checkpoint(tmp_path / "run"))
    assert model.two_rate and model_fingerprint(model) == model_fingerprint(trainer.model)
    enc = model.encode(synthetic_voice(0.5, 150, 0))
    assert enc.top.max() < 16 and enc.codes.max() < config.model.quantizer.codebook_size
