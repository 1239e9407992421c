"""Linear prediction for the LPC WaveNet (model.decoder.lpc_order > 0; LPCNet's split, Valin & Skoglund 2019).

The spectral envelope is not learnt sample by sample: per frame, linear-prediction coefficients are fitted to the
parallel decoder's rendering of the same codes (it carries the envelope, not the waveform's phase), the prediction
p[t] = sum_k c_k x[t - k] from the past samples is computed outside the network, and the WaveNet predicts only the
excitation e[t] = x[t] - p[t], a near-white signal whose distribution is much simpler than the waveform's. The
signal is then x[t] = p[t] + e[t]: an all-pole filter driven by what the WaveNet samples. Everything is in the
pre-emphasised domain the WaveNet already works in.

The coefficients come from the autocorrelation method (windowed frames, a lag window and a white-noise correction,
as speech codecs do), whose normal equations torch.linalg.solve answers for all frames at once; the method's
Toeplitz system yields a stable (minimum-phase) all-pole filter, which the recursion at sampling time relies on.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.nn import functional as F

from vqspeech import audio

# 16 ms analysis windows centred on each 4 ms frame: long enough for a low voice's pitch period, short for the
# envelope's changes. The lag window (a Gaussian of 60 Hz bandwidth) and the 1.0001 white-noise correction keep the
# system well conditioned on narrow formants and near-silence, the usual values in speech codecs (e.g. AMR).
WINDOW_FRAMES = 4
LAG_WINDOW_HZ = 60.0
WHITE_NOISE = 1.0001
N_STREAMS = 3  # the WaveNet's class inputs: x[t - 1], p[t], e[t - 1] (and with pitch lags e[t - lag[t]])
# The pitch-lag input is the excitation this many samples short of one period back: the quantised pitch's period is
# a few samples off the true one, and the WaveNet's causal layers see the lagged stream's past, so a pulse a little
# later than the period says is still in view.
LAG_LEAD = 2
MAX_LAG = 1023  # samples (a 16 Hz period at 16 kHz): the sampler keeps a ring of MAX_LAG + 1 excitation classes


def coefficients(x: torch.Tensor, hop: int, order: int, sample_rate: int) -> torch.Tensor:
    """x [B, T] (T a multiple of hop, pre-emphasised) -> predictor coefficients c [B, T // hop, order], float32:
    frame f's prediction of sample t is sum_k c[f, k - 1] * x[t - k], k = 1..order."""
    B, T = x.shape
    win = WINDOW_FRAMES * hop
    pad = (win - hop) // 2
    frames = F.pad(x.double(), (pad, win - hop - pad)).unfold(-1, win, hop)  # [B, F, win]
    frames = frames * torch.hann_window(win, periodic=False, dtype=torch.float64)
    lags = torch.arange(order + 1, dtype=torch.float64)
    r = torch.stack([(frames[..., : win - k] * frames[..., k:]).sum(-1) for k in range(order + 1)], -1)  # [B, F, P+1]
    r = r * torch.exp(-0.5 * (2 * math.pi * LAG_WINDOW_HZ * lags / sample_rate) ** 2)
    r[..., 0] = r[..., 0] * WHITE_NOISE + 1e-9  # silence: a tiny floor instead of a singular system
    idx = (torch.arange(order)[:, None] - torch.arange(order)[None, :]).abs()
    return torch.linalg.solve(r[..., idx], r[..., 1:]).float()


def predict(x: torch.Tensor, coeffs: torch.Tensor, hop: int) -> torch.Tensor:
    """Teacher-forced prediction from the true past: x [B, T], coeffs [B, T // hop, P] -> p [B, T] (x before 0 is 0)."""
    P = coeffs.shape[-1]
    past = F.pad(x, (P, 0)).unfold(-1, P, 1)[:, : x.shape[1]].flip(-1)  # [B, T, P]: x[t - 1], ..., x[t - P]
    return (past * coeffs.repeat_interleave(hop, dim=1)).sum(-1)


def pitch_lags(f0: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """F0 [B, T] in Hz (0 unvoiced) -> lag [B, T] long: the period in samples less LAG_LEAD (at least 1), 0 where
    unvoiced (no lagged input there)."""
    period = torch.where(f0 > 0, sample_rate / f0.clamp(min=1.0), torch.zeros_like(f0))
    return torch.where(f0 > 0, (period.round().long() - LAG_LEAD).clamp(1, MAX_LAG), torch.zeros_like(period, dtype=torch.long))


def lagged(classes: torch.Tensor, lags: torch.Tensor, fill: int) -> torch.Tensor:
    """classes [B, T], lags [B, T] -> [B, T]: classes[t - lags[t]], `fill` where the lag is 0 or reaches before 0."""
    t = torch.arange(classes.shape[1])[None]
    source = t - lags
    out = classes.gather(1, source.clamp(min=0))
    return torch.where((lags > 0) & (source >= 0), out, torch.full_like(out, fill))


def teacher_forcing(x: torch.Tensor, coeffs: torch.Tensor, hop: int, bits: int,
                    lags: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T] the pre-emphasised signal, coeffs [B, T // hop, P], lags [B, T] (`pitch_lags`) or None
    -> (target [B, T]: the excitation's mu-law classes, inputs [B, 3 or 4, T]: the classes of x[t - 1], p[t],
    e[t - 1] (and e[t - lags[t]]), mid-scale before the first sample)."""
    p = predict(x, coeffs, hop)
    e = x - p
    mid = 2 ** (bits - 1)
    shifted = lambda c: F.pad(c[:, :-1], (1, 0), value=mid)  # noqa: E731 - what is fed at t is what came at t - 1
    x_cls, p_cls, e_cls = (audio.mu_law_encode(v, bits) for v in (x, p, e))
    streams = [shifted(x_cls), p_cls, shifted(e_cls)] + ([] if lags is None else [lagged(e_cls, lags, mid)])
    return e_cls, torch.stack(streams, 1)


def class_values(bits: int) -> np.ndarray:
    """The value of each mu-law class, float64 [2**bits]: what the sampler adds to its prediction."""
    return audio.mu_law_decode(torch.arange(2**bits), bits).double().numpy()


def synthesise(classes: np.ndarray, coeffs: np.ndarray, hop: int, bits: int) -> np.ndarray:
    """The signal a sampling run made: excitation classes [B, T] and coeffs [B, T // hop, P] -> x [B, T] float32,
    x[t] = sum_k c[f(t), k - 1] x[t - k] + e[t] in float64, the same sums in the same order as the sampler's."""
    x = _compiled_all_pole()(np.ascontiguousarray(classes, dtype=np.int64), np.ascontiguousarray(coeffs, dtype=np.float32),
                             class_values(bits), hop)
    return x.astype(np.float32)


def _all_pole(classes, coeffs, values, hop):
    B, T = classes.shape
    P = coeffs.shape[2]
    x = np.zeros((B, T))
    for b in range(B):
        for t in range(T):
            acc = 0.0
            for k in range(min(P, t)):
                acc += np.float64(coeffs[b, t // hop, k]) * x[b, t - 1 - k]
            x[b, t] = acc + values[classes[b, t]]
    return x


@functools.cache
def _compiled_all_pole():
    """_all_pole compiled on first use (no fastmath: the sums in the sampler's order), so that importing the model
    does not import numba: only code that generates pays for it."""
    import numba

    return numba.njit(cache=True, nogil=True)(_all_pole)
