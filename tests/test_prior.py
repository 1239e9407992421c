"""The prior over the codes: the token layout, the exact twin, the range coder under it (lossless, golden bytes,
thread-independent, corruption detected), the codec with and without it, its errors, and its training."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO, synthetic_voice
from vqspeech.codec import api, bitstream, entropy
from vqspeech.config import PriorConfig, PriorModelConfig, to_dict
from vqspeech.data.codes import CodeCorpus, TokenLayout, split_tokens, tokens_of
from vqspeech.models.prior import CodePrior
from vqspeech.models.prior_exact import ExactPrior

LAYOUT = TokenLayout(codebook_size=16, pitch_levels=8, pitch_frames=4)


def tiny_prior(seed: int = 0, layout: TokenLayout = LAYOUT, voice_dim: int = 8, window: int = 12) -> CodePrior:
    torch.manual_seed(seed)
    prior = CodePrior(PriorModelConfig(dim=16, layers=2, heads=2, ff_dim=32, window=window, dropout=0.0), layout, voice_dim)
    with torch.no_grad():  # larger weights than the init's, so that predictions differ from position to position
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return prior.eval()


def stream_of(n_frames: int, seed: int, layout: TokenLayout = LAYOUT) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.repeat(rng.integers(0, layout.codebook_size, n_frames * layout.pitch_frames // 2), 2)
    return tokens_of(codes, rng.integers(0, layout.pitch_levels, n_frames), layout)


def test_tokens_interleave_pitch_then_codes_and_split_back():
    codes, pitch = np.arange(8) % 16, np.array([3, 5])
    tokens = tokens_of(codes, pitch, LAYOUT)
    assert tokens.tolist() == [16 + 3, 0, 1, 2, 3, 16 + 5, 4, 5, 6, 7]
    back_codes, back_pitch = split_tokens(tokens, LAYOUT)
    assert back_codes.tolist() == codes.tolist() and back_pitch.tolist() == pitch.tolist()
    with pytest.raises(ValueError, match="pitch symbols"):
        tokens_of(codes[:7], pitch, LAYOUT)


def test_the_exact_twin_predicts_what_the_float_prior_does_in_pieces_of_any_size():
    prior = tiny_prior()
    tokens = stream_of(12, 0)
    voice = torch.randn(8)
    inputs = np.concatenate([[prior.start_token], tokens[:-1]])
    with torch.no_grad():
        float_logits = prior(torch.from_numpy(inputs)[None], voice[None])[0].numpy()
    exact = ExactPrior.freeze(prior)
    whole = exact.feed(exact.start(voice.numpy()), inputs)
    allowed = np.isfinite(float_logits)
    gap = np.abs(whole / 32 - float_logits)[allowed]
    assert gap.max() < 0.15 and gap.mean() < 0.05  # the rounding of weights and activations, nothing more
    state, pieces = exact.start(voice.numpy()), []
    for size in (1, 5, 2, 17, 100):  # windows cross the pieces' boundaries
        pieces.append(exact.feed(state, inputs[sum(len(p) for p in pieces):][:size]))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_range_coding_is_lossless_and_beats_packing_on_predictable_codes():
    exact = ExactPrior.freeze(tiny_prior())
    prior = entropy.Prior(exact, "0" * 16, "abcd0123", {})
    voice = np.linspace(-1, 1, 8).astype(np.float32)
    for seed, n in ((0, 0), (1, 1), (2, 40)):
        tokens = stream_of(n, seed)
        words = entropy.encode_tokens(prior, tokens, voice)
        np.testing.assert_array_equal(entropy.decode_tokens(prior, words, len(tokens), voice), tokens)
    # What the coder spends is what the prior says, to a few bits per stream.
    tokens = stream_of(40, 2)
    spent = 32 * len(entropy.encode_tokens(prior, tokens, voice))
    assert abs(spent - entropy.token_bits(prior, tokens, voice).sum()) < 64


def golden_prior() -> entropy.Prior:
    """An exact prior made from integers alone (no float training, no torch init): the same everywhere."""
    template = ExactPrior.freeze(tiny_prior())
    rng = np.random.default_rng(1234)
    tensors = {}
    for name, v in template.tensors.items():
        if name.endswith("_exp"):
            tensors[name] = v
        elif name.endswith("norm"):
            tensors[name] = np.full(v.shape, 256, np.int64)
        else:
            tensors[name] = rng.integers(-400, 400, v.shape)
    meta = {**template.meta, "shifts": {name: 10 for name in template.meta["shifts"]}}
    return entropy.Prior(ExactPrior(tensors, meta), "0" * 16, "00000000", {})


# Words and the start of their sha256, from the first run of this code. A change here means a file written by one
# version of vqspeech no longer decodes with another: bump the format version instead.
GOLDEN = (23, "a0711b2354ddb6ae")


def test_golden_bytes():
    prior = golden_prior()
    words = entropy.encode_tokens(prior, stream_of(30, 7), np.linspace(-0.5, 0.5, 8).astype(np.float32))
    digest = hashlib.sha256(np.asarray(words, "<u4").tobytes()).hexdigest()
    assert (len(words), digest[:16]) == GOLDEN


def test_the_same_bytes_under_one_and_two_threads():
    script = ("import sys, hashlib, numpy as np; sys.path.insert(0, '.'); from tests.test_prior import *; "
              "p = golden_prior(); w = entropy.encode_tokens(p, stream_of(300, 3), np.ones(8, np.float32) / 4); "
              "print(hashlib.sha256(np.asarray(w, '<u4').tobytes()).hexdigest())")
    outs = set()
    for threads in ("1", "2"):
        env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        import os

        env = {**os.environ, **env}
        outs.add(subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1
