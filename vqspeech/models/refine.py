"""Analysis by synthesis at encode time: the encoder has the recording, so it can choose the codes (and the voice
vector) under which the decoder renders that recording best, as CELP codecs choose their excitation by decoding
each candidate. The decoder and the file format do not change, only which codes and voice the file holds.

    refine(model, [wav], n_samples, encoded, steps)  ->  Encoded with refined codes (and voice vector)

Each window of WINDOW_SECONDS starts from the encoder's own latents; Adam, its step decaying along a cosine, moves them
(straight through the nearest-code lookup, as in VQ-VAE training) to lower the parallel decoder's multi-resolution
STFT loss against the recording over that window, with CONTEXT_SECONDS of already-chosen codes each side as the
decoder's context. The first window moves
the voice vector too (a voice-vector model's). The codes stay codes of the same codebook, so any decoder of the model
reads them; they are less like the encoder's plain choice, so they cost more bits under the prior (measured with the
benefit in bench/results/codec-v4.1-refine-so762-unseen.md). Off by default: each step renders the window forwards
and backwards (about 0.06 s per second of audio per step on one core in float32, 0.04 in bfloat16 where the CPU has
it: vqspeech/precision.py; 20 steps encode unseen speakers at 0.92x and 1.31x real time, the same PESQ-WB and STOI).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import torch

from vqspeech.models.encoding import Encoded, _Window, encoder_context
from vqspeech.precision import inference_autocast

WINDOW_SECONDS = 4.0  # frames refined together: the gradient of one window's backward pass stays in memory
CONTEXT_SECONDS = 0.32  # fixed codes each side, beyond the parallel decoder's reach (about 45 frames, 0.18 s)
# Adam's first step sizes, decayed to 0 along a cosine over the steps. Against a constant 0.01 / 0.03 on 20 files
# (10 VCC held-out, 10 unseen): PESQ-WB +0.04 ± 0.02 and STOI +0.003 ± 0.001 at 60 steps for 5 % more bytes, and at
# 20 steps 84 % of the constant 60 steps' PESQ gain instead of 60 %. A constant 0.003 moved 17 % of the codes in 60
# steps for 60 % of the gain of 0.01.
LATENT_LR = 0.03  # on the latents
VOICE_LR = 0.09  # on the voice vector (its entries are of order 1)
MIN_SAMPLES = 2048  # the STFT loss's longest frame: a shorter recording is left as the encoder coded it


def _frames(seconds: float, model) -> int:
    """`seconds` as code frames, a whole number of pitch frames (the pitch track and any top codes lie on them)."""
    c = model.config
    unit = c.pitch_frames if c.pitch or model.two_rate else 1
    return max(unit, round(seconds * c.sample_rate / c.hop) // unit * unit)


def refine(model, blocks: Iterable[np.ndarray], n_samples: int, encoded: Encoded, steps: int,
           speaker: str | int | None = None, seed: int = 0) -> Encoded:
    """The recording (normalised float32 blocks, `n_samples` in all, as `encoded` was made from) and its Encoded
    (codes [F]) -> Encoded with codes chosen by `steps` Adam steps per window. The voice: the encoding's vector
    (refined in the first window), else the training speaker `speaker` (left as it is), else the model's first: the
    voice a file that records none decodes in (data.codes.default_speaker). `model`: a VQSpeech with a parallel
    decoder and codes at one rate."""
    from vqspeech.codec.packing import quantise_voice
    from vqspeech.models.parallel import stft_loss

    if steps <= 0:
        return encoded
    if model.parallel is None:
        raise ValueError("refinement renders with the parallel decoder, which this model does not have")
    if model.two_rate:
        raise ValueError("refinement of codes at two rates is not supported")
    c, dev = model.config, model.device
    if encoded.voice is not None:
        voice = encoded.voice.float().reshape(1, -1).to(dev)
    else:
        name = model.speaker_names[0] if speaker is None else speaker
        voice = model.speaker_voice(torch.tensor([model.speaker_index(name)], device=dev)).detach()
    n_frames = encoded.codes.shape[0]
    if n_frames * c.hop < MIN_SAMPLES:
        return encoded
    unit = c.pitch_frames if c.pitch else 1
    margin, enc_ctx = _frames(CONTEXT_SECONDS, model), encoder_context(model)
    # Windows of about equal length (none a short remainder, which the loss's long frames could not measure).
    n_windows = -(-n_frames // _frames(WINDOW_SECONDS, model))
    span = -(-n_frames // n_windows // unit) * unit
    window = _Window(blocks, n_samples, n_frames * c.hop)
    codes = encoded.codes.clone()
    lf0 = torch.tensor([[encoded.lf0_mean, encoded.lf0_std]], device=dev)
    loss_fn = stft_loss()
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:  # gradients reach the latents and the voice only
        p.requires_grad_(False)
    try:
        for a in range(0, n_frames, span):
            b = min(a + span, n_frames)
            lo, hi = max(0, a - margin), min(n_frames, b + margin)
            s0, s1 = max(0, lo * c.hop - enc_ctx), min(n_frames * c.hop, hi * c.hop + enc_ctx)
            wav = torch.from_numpy(window.get(s0, s1).copy())
            with torch.no_grad():
                z = model.encoder.infer(wav[None, None].to(dev))[..., (a * c.hop - s0) // c.hop : (b * c.hop - s0) // c.hop]
                left = model.dequantise(codes[lo:a][None].to(dev))
                right = model.dequantise(codes[b:hi][None].to(dev))
            target = wav[lo * c.hop - s0 : hi * c.hop - s0].to(dev)[None, None]
            pitch = None if encoded.pitch is None else encoded.pitch[lo // unit : hi // unit][None].to(dev)
            f0 = model.f0(pitch, lf0)
            inside = slice((a - lo) * c.hop, (b - lo) * c.hop)  # the loss counts the refined frames' samples only
            z = z.detach().requires_grad_(True)
            move_voice = a == 0 and encoded.voice is not None
            v = voice.clone().requires_grad_(move_voice)
            groups = [{"params": [z], "lr": LATENT_LR}] + ([{"params": [v], "lr": VOICE_LR}] if move_voice else [])
            opt = torch.optim.Adam(groups)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            with torch.enable_grad():
                for _ in range(steps):
                    q = model.dequantise(model.quantise(z)[0])
                    q = z + (q - z).detach()  # straight through the nearest-code lookup
                    noise = torch.randn(1, (hi - lo) * c.hop, generator=generator).to(dev)
                    with inference_autocast(dev):  # bfloat16 where native, as decoding renders
                        cond = model.condition(torch.cat([left, q, right], -1), v, pitch)
                        out = model.parallel(cond.to(next(model.parallel.parameters()).dtype), f0, noise, voice=v)
                    loss = loss_fn(out[..., inside][:, None].float(), target[..., inside])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    schedule.step()
            with torch.no_grad():
                codes[a:b] = model.quantise(z.detach())[0][0].cpu()
            if move_voice:  # from here on the voice is the file's, quantised as it will carry it
                voice = quantise_voice(v.detach()[0]).to(dev)[None]
    finally:
        for p, w in zip(params, was):
            p.requires_grad_(w)
    return replace(encoded, codes=codes, voice=None if encoded.voice is None else voice[0].cpu())
