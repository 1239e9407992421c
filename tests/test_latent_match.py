"""kNN matching of a source's encoder latents to a target's reference recordings (latent_match.LatentMatch): what
the codes become, that it works frame by frame, and how its searches treat the offset between two speakers."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import synthetic_voice, tiny_codec_model
from vqspeech import audio, conversion, latent_match
from vqspeech.models.encoding import encode_stream


@pytest.fixture(scope="module")
def model():
    return tiny_codec_model(0, ("alice", "bob", "carol"))[0]


def speech(seconds=1.0, f0=150.0, seed=0):
    return audio.normalise(synthetic_voice(seconds, f0, seed))


def test_latent_match_puts_the_references_codes_in_the_source_order(model):
    """kNN matching of the latents: with k=1 each frame becomes its nearest reference frame, so a source matched to
    itself keeps its codes, and a source matched to another voice uses only codes that voice produced; it works frame
    by frame, so chunked encoding gives the same codes; with a training speaker as the target it is refused."""
    src, ref = speech(1.5, 150, seed=1), speech(1.2, 240, seed=2)
    plain = model.encode(src)
    assert torch.equal(model.encode(src, latent_map=latent_match.LatentMatch(model, [src], k=1)).codes, plain.codes)
    matched = model.encode(src, latent_map=latent_match.LatentMatch(model, [ref], k=1)).codes
    assert set(matched.tolist()) <= set(model.encode(ref).codes.tolist())
    assert not torch.equal(matched, plain.codes)
    match = latent_match.LatentMatch(model, [ref], k=3)
    one_shot = model.encode(src, latent_map=match)
    chunked = encode_stream(model, [src[:7000], src[7000:]], src.size, encoder_seconds=0.25, latent_map=match)
    assert torch.equal(chunked.codes, one_shot.codes) and torch.equal(chunked.pitch, plain.pitch)
    with pytest.raises(ValueError, match="reference recordings"):
        conversion.convert(model, src, target="bob", match_k=4)
    with pytest.raises(ValueError, match="at least 1"):
        latent_match.LatentMatch(model, [ref], k=0)
    # blend: each frame that share of the way from its own latent to its matches' mean
    z = torch.randn(1, model.config.latent_dim, 40)
    half, full = latent_match.LatentMatch(model, [ref], k=3, blend=0.5), latent_match.LatentMatch(model, [ref], k=3)
    assert torch.allclose(half(z), 0.5 * z + 0.5 * full(z), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        latent_match.LatentMatch(model, [ref], k=3, blend=0.0)


def test_centred_search_ignores_a_constant_offset_between_the_speakers(model):
    """search "centred": the neighbours of a frame are found with the source's and the references' mean latents
    removed, so adding one vector to every source frame (a speaker offset) picks the same reference frames, where
    the plain search picks others; "shifted" also moves the kept share by the means' difference. Both need the
    source (for_source), and the plain search is left as it was."""
    ref = speech(1.2, 240, seed=2)
    z = latent_match.latents(model, [speech(1.5, 150, seed=1)]).T[None]  # [1, D, F]
    offset = 3.0 * z.std() * torch.randn(z.shape[1], 1)
    plain = latent_match.LatentMatch(model, [ref], k=1)
    centred = latent_match.LatentMatch(model, [ref], k=1, search="centred")
    assert plain.for_source(model, ref) is plain and centred.source_mean is None
    with pytest.raises(ValueError, match="for_source"):
        centred(z)
    mean = z[0].mean(1)
    here, there = (latent_match.LatentMatch(model, [ref], k=1, search="centred") for _ in range(2))
    here.source_mean, there.source_mean = mean, mean + offset[:, 0]
    assert torch.allclose(here(z), there(z + offset))  # the same reference frames, taken as they are
    assert not torch.allclose(plain(z), plain(z + offset))
    frames = {tuple(f) for f in plain.bank.tolist()}
    assert all(tuple(f) in frames for f in here(z)[0].T.tolist())
    shifted = latent_match.LatentMatch(model, [ref], k=1, blend=0.5, search="shifted")
    shifted.source_mean = mean
    expected = 0.5 * (z + (shifted.bank_mean - mean)[None, :, None]) + 0.5 * here(z)
    assert torch.allclose(shifted(z), expected, atol=1e-5)
    matched = centred.for_source(model, speech(1.5, 150, seed=1))
    assert matched is not centred and torch.allclose(matched.source_mean, mean, atol=1e-5)
    with pytest.raises(ValueError, match="one of plain, centred, shifted"):
        latent_match.LatentMatch(model, [ref], search="middle")
    default = latent_match.reference_match(model, [ref], k=4)
    assert default.search == latent_match.MATCH_SEARCH and default.blend == latent_match.MATCH_BLEND


def test_a_floor_leaves_the_pauses_out_of_the_latents(model):
    """latents(..., floor_db): only the frames within floor_db of the loudest, so a pause does not weigh in a mean."""
    import numpy as np

    voiced = speech(1.0, 150, seed=3)
    paused = np.concatenate([voiced, np.zeros(8000, np.float32)])
    every, speech_only = latent_match.latents(model, [paused]), latent_match.latents(model, [paused], floor_db=40.0)
    hop = model.config.hop
    assert every.shape[0] == model.pad_length(len(paused)) // hop
    # the pause's 125 frames are gone, most of the speech's 250 kept
    assert len(voiced) // hop // 2 < speech_only.shape[0] <= len(voiced) // hop + 8


def test_a_gated_match_moves_the_well_matched_frames_and_keeps_the_others(model):
    """gated: a frame whose matches are within the nearest quarter of the source's frames moves the whole blend, one
    beyond the farthest quarter keeps its own latent, those between move part of the way; the quartiles come from
    the source (for_source), so chunked encoding gives the one-shot codes; without for_source it is refused."""
    src, ref = speech(1.5, 150, seed=1), speech(1.2, 240, seed=2)
    gated = latent_match.LatentMatch(model, [ref], k=2, blend=0.8, search="centred", gated=True)
    with pytest.raises(ValueError, match="for_source"):
        gated(latent_match.latents(model, [src]).T[None])
    mine = gated.for_source(model, src)
    full = latent_match.LatentMatch(model, [ref], k=2, blend=0.8, search="centred").for_source(model, src)
    z = latent_match.latents(model, [src]).T[None]  # [1, D, F]
    distance = mine._nearest(z)[1][0]  # [F]
    lo, hi = mine.gate_range
    moved, whole = (mine(z) - z)[0], (full(z) - z)[0]  # [D, F]
    near, far = distance <= lo, distance >= hi
    assert near.sum() >= z.shape[2] // 5 and far.sum() >= z.shape[2] // 5
    assert torch.allclose(moved[:, near], whole[:, near], atol=1e-5)
    assert torch.equal(moved[:, far], torch.zeros_like(moved[:, far]))
    between = ~near & ~far
    share = (moved[:, between].norm(dim=0) / whole[:, between].norm(dim=0))
    assert torch.all((share > 0) & (share < 1))
    one_shot = model.encode(src, latent_map=mine)
    chunked = encode_stream(model, [src[:7000], src[7000:]], src.size, encoder_seconds=0.25, latent_map=mine)
    assert torch.equal(chunked.codes, one_shot.codes)
    assert not torch.equal(one_shot.codes, model.encode(src, latent_map=full).codes)
