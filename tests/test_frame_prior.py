"""The prior that steps once per pitch frame (models/frame_prior.py): causal, its exact twin the same in pieces, one
token at a time and compiled, lossless as the bitstream's entropy model, recorded by kind in its file, trained by
train-prior; and files coded under a model's earlier prior still decode where it is kept beside the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_prior import LAYOUT, assert_rounding_only, stream_of, trained  # noqa: F401  (trained: the tiny codec model and its codes)
from vqspeech.codec import entropy
from vqspeech.config import PriorConfig, PriorModelConfig
from vqspeech.models.frame_prior import FramePrior
from vqspeech.models.frame_prior_exact import ExactFramePrior


def tiny_frame_prior(seed: int = 0, window: int = 3) -> FramePrior:
    torch.manual_seed(seed)
    config = PriorModelConfig(dim=16, layers=2, heads=2, ff_dim=32, window=window, dropout=0.0, frame_level=True, local_dim=24)
    prior = FramePrior(config, LAYOUT, 8)
    with torch.no_grad():  # larger weights than the init's, so that predictions differ from position to position
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return prior.eval()


def test_a_position_is_predicted_from_the_tokens_before_it_only():
    prior, tokens, voice = tiny_frame_prior(), torch.from_numpy(stream_of(6, 0))[None], torch.randn(1, 8)
    with torch.no_grad():
        base = prior(tokens, voice)
        for t in (0, 3, 5, 12, 28):
            changed = tokens.clone()
            changed[0, t:] = torch.where(changed[0, t:] >= LAYOUT.codebook_size, LAYOUT.codebook_size + (changed[0, t:] + 1) % LAYOUT.pitch_levels,
                                         (changed[0, t:] + 7) % LAYOUT.codebook_size)
            out = prior(changed, voice)
            assert torch.equal(out[0, : t + 1], base[0, : t + 1])  # up to t: nothing at or after t was read
            assert not torch.equal(out[0, t + 1 :], base[0, t + 1 :])


def test_the_exact_twin_matches_the_float_prior_in_pieces_one_token_at_a_time_and_compiled():
    prior = tiny_frame_prior()
    tokens, voice = stream_of(9, 1), torch.randn(8)
    inputs = np.concatenate([[LAYOUT.vocab], tokens[:-1]])
    with torch.no_grad():
        float_logits = prior(torch.from_numpy(tokens)[None], voice[None])[0].numpy()
    exact = ExactFramePrior.freeze(prior)
    whole = exact.feed(exact.start(voice.numpy()), inputs)
    assert_rounding_only(whole, float_logits)
    state, pieces = exact.start(voice.numpy()), []
    for a, b in ((0, 5), (5, 20), (20, 45)):
        pieces.append(exact.feed(state, inputs[a:b]))
    assert np.array_equal(np.concatenate(pieces), whole)
    stream = exact.stepper(voice.numpy())
    assert stream.kernel is not None  # numba is a dependency: the compiled path is the one tested here
    assert np.array_equal(np.stack([stream.next(int(i)) for i in inputs]), whole)
    stream = exact.stepper(voice.numpy())
    frequencies = np.stack([stream.next_frequencies(int(i)) for i in inputs])
    assert np.array_equal(frequencies, np.stack([exact.frequencies_of(whole[t], t) for t in range(len(inputs))]))
    stream = exact.stepper(voice.numpy())  # the compiled step along a known stream, in pieces that split frames
    assert np.array_equal(np.concatenate([stream.frequencies(inputs[:7]), stream.frequencies(inputs[7:])]), frequencies)
    state = exact.start(voice.numpy())  # what encoding runs: batched, whole frames, the last piece cut short
    along = [exact.frequencies_along(state, inputs[a:b], a) for a, b in ((0, 10), (10, 40), (40, 43))]
    assert np.array_equal(np.concatenate(along), frequencies[:43])
    with pytest.raises(ValueError, match="whole number of frames"):
        exact.feed(exact.start(voice.numpy()), inputs[:7])


def test_range_coding_under_a_frame_prior_is_lossless_and_its_file_names_its_kind(tmp_path):
    exact = ExactFramePrior.freeze(tiny_frame_prior())
    prior = entropy.write_prior(exact, "0" * 16, {}, tmp_path / "frame.prior.pt")
    assert isinstance(prior.exact, ExactFramePrior) and prior.exact.meta["kind"] == "frame"
    tokens, voice = stream_of(40, 2), np.random.default_rng(0).standard_normal(8).astype(np.float32)
    words = entropy.encode_tokens(prior, tokens, voice)
    assert np.array_equal(entropy.decode_tokens(prior, words, len(tokens), voice), tokens)
    state = torch.load(tmp_path / "frame.prior.pt", weights_only=True)
    state["meta"]["kind"] = "hourly"
    torch.save(state, tmp_path / "odd.prior.pt")
    with pytest.raises(entropy.PriorError, match="odd.prior.pt: a prior of kind 'hourly'"):
        entropy.load_prior(tmp_path / "odd.prior.pt")


def test_train_prior_trains_a_frame_prior_that_codes_the_model_s_files(trained, tmp_path):
    from vqspeech import audio, checkpoint
    from vqspeech.codec import api, bitstream
    from vqspeech.train.prior_loop import PriorTrainer, export_prior

    config = PriorConfig(model=PriorModelConfig(dim=16, layers=1, heads=2, ff_dim=32, window=4, dropout=0.0, frame_level=True, local_dim=32))
    t = config.train
    t.codes, t.run_dir, t.seq_len, t.batch_size, t.steps, t.lr, t.warmup_steps = (str(trained["root"] / "run" / "codes.npz"),
                                                                                 str(tmp_path / "run"), 40, 8, 60, 3e-2, 5)
    t.val_every = t.checkpoint_every = 30
    trainer = PriorTrainer(config, trained["model_path"])
    assert isinstance(trainer.prior, FramePrior)
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    key = next(k for k in after if k.endswith("bits/code"))
    assert after[key] < before[key] - 0.5
    t.seq_len = 42
    with pytest.raises(ValueError, match="whole number of frames"):
        PriorTrainer(config, trained["model_path"])
    # The model's token prior codes a file; then the frame prior replaces it, the token prior kept beside the model
    # by its id: files of both decode, to the codes plain packing gives.
    model_path = tmp_path / "tiny.pt"
    model_path.write_bytes(trained["model_path"].read_bytes())
    token_prior = export_prior(checkpoint.latest_checkpoint(trained["root"] / "run"), checkpoint.prior_path(model_path))
    wav = audio.load(trained["root"] / "corpus" / "bob" / "bob_1.wav")
    older = api.encode_audio(checkpoint.load(model_path), wav)
    kept = entropy.retire_prior(model_path)
    assert kept.name == f"tiny.prior.{token_prior.id}.pt.xz" and not checkpoint.prior_path(model_path).exists()
    export_prior(checkpoint.latest_checkpoint(tmp_path / "run"), checkpoint.prior_path(model_path))
    model = checkpoint.load(model_path)
    coded, plain = api.encode_audio(model, wav), api.encode_audio(model, wav, prior=False)
    framed, packed = bitstream.read(coded), bitstream.read(plain)
    assert framed.header.prior == entropy.prior_for(model).id != token_prior.id and len(coded) < len(plain)
    for data in (coded, older):
        codes, pitch = api.symbols(model, bitstream.read(data))
        assert np.array_equal(codes, packed.codes) and np.array_equal(pitch, packed.pitch)
    np.testing.assert_array_equal(api.decode_bytes(model, coded)[0], api.decode_bytes(model, plain)[0])
    corrupt = bytearray(kept.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    kept.write_bytes(bytes(corrupt))
    with pytest.raises(entropy.PriorError, match=f"{kept.name}: not a readable prior file"):
        api.symbols(checkpoint.load(model_path), bitstream.read(older))
    kept.unlink()
    with pytest.raises(bitstream.BitstreamError, match=f"range-coded under prior {token_prior.id}"):
        api.symbols(checkpoint.load(model_path), bitstream.read(older))


def test_a_prior_tied_to_the_codebook_folds_into_a_plain_one():
    """model.tie_codebook: the code rows of the embeddings and head are partly the codec's code vectors through learned
    maps; exported, they are plain tables that an untied frame prior (and so the exact twin) computes exactly."""
    torch.manual_seed(1)
    codebook = torch.randn(LAYOUT.codebook_size, 6)
    config = PriorModelConfig(dim=16, layers=2, heads=2, ff_dim=32, window=3, dropout=0.0, frame_level=True,
                              local_dim=24, tie_codebook=True)
    tied = FramePrior(config, LAYOUT, 8, codebook).eval()
    with torch.no_grad():
        for p in tied.parameters():
            p.add_(0.3 * torch.randn_like(p))
    plain = FramePrior(PriorModelConfig(**{**config.__dict__, "tie_codebook": False}), LAYOUT, 8).eval()
    plain.load_state_dict(tied.export_state_dict())
    tokens, voice = torch.from_numpy(stream_of(6, 3))[None], torch.randn(1, 8)
    with torch.no_grad():
        want = tied(tokens, voice)
        torch.testing.assert_close(plain(tokens, voice), want)
        # Two codes with the same vector differ only by their free parts: the tie is what they share.
        assert not torch.equal(tied.tables()["head"][:LAYOUT.codebook_size], tied.head.weight[:LAYOUT.codebook_size])
    exact = ExactFramePrior.freeze(tied)
    inputs = np.concatenate([[LAYOUT.vocab], tokens[0, :-1].numpy()])
    assert_rounding_only(exact.feed(exact.start(voice[0].numpy()), inputs), want[0].numpy())
    with pytest.raises(ValueError, match="needs the codec's codebook"):
        FramePrior(config, LAYOUT, 8)
