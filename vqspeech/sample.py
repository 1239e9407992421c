"""Speech from the prior: codes drawn from the prior over the codes, rendered by the codec's decoder.

    sample_speech(model, prior, speaker, seconds)        the VQ-VAE paper's experiment: speech no one said
    continue_speech(model, prior, wav, seconds)          a recording's codes continued by the prior, in its voice

Both draw from the exact prior (the coder's: models/prior_exact.py), its integer logits read in nats, with a
temperature and optionally only the top-k tokens; a seed makes a draw repeatable.
"""

from __future__ import annotations

import numpy as np
import torch

from vqspeech.codec.entropy import Prior
from vqspeech.data.codes import TokenLayout, default_speaker, default_voice, split_tokens, tokens_of
from vqspeech.models.prior_exact import LOGIT_BITS
from vqspeech.models.vqvae import Encoded, VQSpeech

MAX_SECONDS = 600.0


def sample_tokens(prior: Prior, voice: np.ndarray, n: int, prompt: np.ndarray | None = None, temperature: float = 1.0,
                  top_k: int = 0, seed: int = 0) -> np.ndarray:
    """n new tokens after `prompt` (tokens [P], P a multiple of the period; none: from a stream's start) ->
    tokens [n], drawn one at a time."""
    if temperature <= 0:
        raise ValueError(f"--temperature {temperature:g}: must be above 0")
    if top_k < 0:
        raise ValueError(f"--top-k {top_k}: give 0 (all tokens) or more")
    exact, rng = prior.exact, np.random.default_rng(seed)
    stream = exact.stepper(voice)
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, np.int64)
    previous = exact.start_token
    for token in prompt:  # the prompt's positions, one step each (the stepper keeps only the window it needs)
        stream.next(previous)
        previous = int(token)
    out = np.empty(n, np.int64)
    for t in range(n):
        position = len(prompt) + t
        logits = stream.next(previous)
        allowed = exact.frequencies_of(logits, position) > 0  # this position's kind of token (pitch or code)
        logp = np.where(allowed, logits / (1 << LOGIT_BITS), -np.inf) / temperature  # integer logits -> nats
        if top_k and top_k < allowed.sum():
            cut = np.sort(logp[allowed])[-top_k]
            logp = np.where(logp >= cut, logp, -np.inf)
        p = np.exp(logp - logp.max())
        previous = out[t] = int(rng.choice(len(p), p=p / p.sum()))
    return out


def _frames(model: VQSpeech, seconds: float) -> int:
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"--seconds {seconds}: give a length in (0, {MAX_SECONDS:g}] seconds")
    return max(1, round(seconds * model.config.sample_rate / model.config.pitch_hop))


def sample_speech(model: VQSpeech, prior: Prior, speaker: str, seconds: float, temperature: float = 1.0, top_k: int = 0,
                  seed: int = 0) -> np.ndarray:
    """-> waveform float32 [seconds * sample_rate] in training speaker `speaker`'s voice and pitch range."""
    layout = TokenLayout.of(model.config)
    index = model.speaker_index(speaker)
    with torch.no_grad():
        voice = model.speaker_voice(torch.tensor([index]))[0].float().numpy()
    tokens = sample_tokens(prior, voice, _frames(model, seconds) * layout.period, None, temperature, top_k, seed)
    codes, pitch = split_tokens(tokens, layout)
    mean, std = model.speaker_pitch(index)
    enc = Encoded(torch.from_numpy(codes), None if pitch is None else torch.from_numpy(pitch), mean, std,
                  len(codes) * model.config.hop, voice=torch.from_numpy(voice))
    return model.decode(enc, index, generator=torch.Generator().manual_seed(seed))


def continue_speech(model: VQSpeech, prior: Prior, wav: np.ndarray, seconds: float, temperature: float = 1.0,
                    top_k: int = 0, seed: int = 0) -> tuple[np.ndarray, int]:
    """A recording (float32 [T] at the model's rate) -> (its codes and `seconds` more from the prior, decoded in one
    pass in the voice its file would carry [T' + seconds * rate], the sample where the continuation starts)."""
    from vqspeech.codec import api, bitstream

    layout = TokenLayout.of(model.config)
    header, codes, pitch = bitstream.unpack(api.encode_audio(model, wav, speaker=api.AUTO_SPEAKER, prior=False))
    voice = default_voice(model, header)
    prompt = tokens_of(codes, pitch, layout)
    more = sample_tokens(prior, voice, _frames(model, seconds) * layout.period, prompt, temperature, top_k, seed)
    codes, pitch = split_tokens(np.concatenate([prompt, more]), layout)
    enc = Encoded(torch.from_numpy(codes), None if pitch is None else torch.from_numpy(pitch), header.lf0_mean,
                  header.lf0_std, len(codes) * model.config.hop, voice=torch.from_numpy(voice))
    out = model.decode(enc, default_speaker(model, header), generator=torch.Generator().manual_seed(seed))
    return out, len(prompt) // layout.period * model.config.pitch_hop
