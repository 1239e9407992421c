"""Codes at two rates (models/two_rate.py): top codes one per pitch frame, bottom codes on the residual; both trained,
both carried in Encoded, chunked encoding still equal to one-shot, and a code space of its own (fingerprint)."""

from __future__ import annotations

import dataclasses

import numpy as np
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
    # No prior lays out top codes yet: refused in one line.
    from vqspeech.data.codes import TokenLayout

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


def test_two_rate_files_are_version_5_and_decode_to_the_same_audio(tmp_path, capsys):
    from vqspeech import audio, cli
    from vqspeech.codec import api, bitstream
    from vqspeech.codec.bitstream import BitstreamError

    model = two_rate_model()
    wav = audio.normalise(synthetic_voice(1.0, 150, seed=5))  # as encode_audio levels it
    data = api.encode_audio(model, wav, speaker="alice")
    parsed = bitstream.read(data)
    h = parsed.header
    enc = model.encode(wav)
    assert h.version == 5 and h.top_codebook_size == 16 and np.array_equal(parsed.top, enc.top.numpy())
    assert np.array_equal(parsed.codes, enc.codes.numpy()) and np.array_equal(parsed.pitch, enc.pitch.numpy())
    # 4 bits a top code, one per pitch frame, on top of the codes and pitch: in the size and the nominal rate.
    assert h.payload_bytes == -(-h.n_frames * h.code_bits // 8) + -(-h.n_top * 4 // 8) + -(-h.n_pitch * h.pitch_bits // 8)
    assert h.bitrate == pytest.approx(250 * h.code_bits + 62.5 * (4 + h.pitch_bits))
    decoded, _ = api.decode_bytes(model, data, speaker="alice", decoder="parallel" if model.parallel else "autoregressive")
    assert decoded.shape == wav.shape
    with pytest.raises(BitstreamError, match="two rates"):
        bitstream.unpack(data)  # two arrays would drop the top codes
    with pytest.raises(BitstreamError, match="checksum"):
        bitstream.read(data[:-6] + bytes([data[-6] ^ 1]) + data[-5:])
    one_rate, _ = tiny_codec_model(0)
    with pytest.raises(BitstreamError, match="top_codebook_size"):
        api.check_model(one_rate, h, force=True)
    path = tmp_path / "x.vqs"
    path.write_bytes(data)
    assert cli.main(["info", str(path)]) == 0
    assert f"top codes  {h.n_top} x 4 bits (codebook 16" in capsys.readouterr().out
