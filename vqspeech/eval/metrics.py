"""Objective speech-quality metrics on 16 kHz waveforms: voicing agreement, STOI, PESQ, mel distance."""

from __future__ import annotations

import numpy as np
import torch

from vqspeech import features


def voicing(reference: np.ndarray, decoded: np.ndarray, hop: int = 256) -> dict[str, float]:
    """Share of voiced frames in each signal and the share of frames whose voicing decision agrees."""
    n = min(len(reference), len(decoded))
    a = features.extract_pitch(reference[:n], hop).voiced
    b = features.extract_pitch(decoded[:n], hop).voiced
    return {"voiced_ref": float(a.mean()), "voiced_dec": float(b.mean()), "voicing_agreement": float((a == b).mean())}


def stoi(reference: np.ndarray, decoded: np.ndarray, sample_rate: int = 16000) -> float:
    from pystoi import stoi as _stoi

    n = min(len(reference), len(decoded))
    return float(_stoi(reference[:n], decoded[:n], sample_rate, extended=False))


def pesq(reference: np.ndarray, decoded: np.ndarray, sample_rate: int = 16000, mode: str = "wb") -> float:
    """PESQ (ITU-T P.862.2 wideband by default, 'nb' for P.862); NaN where PESQ finds no speech."""
    from pesq import pesq as _pesq
    from pesq import PesqError

    n = min(len(reference), len(decoded))
    try:
        return float(_pesq(sample_rate, reference[:n], decoded[:n], mode))
    except PesqError:
        return float("nan")


def mel_distance(reference: np.ndarray, decoded: np.ndarray, hop: int = 256) -> float:
    """Mean absolute log-mel difference (natural log), frames aligned in time."""
    n = min(len(reference), len(decoded)) // hop * hop
    a = features.log_mel(torch.from_numpy(reference[None, :n]), hop)
    b = features.log_mel(torch.from_numpy(decoded[None, :n].astype(np.float32)), hop)
    return float((a - b).abs().mean())


def speech_quality(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    out = voicing(reference, decoded)
    out.update(stoi=stoi(reference, decoded), pesq_wb=pesq(reference, decoded), mel_distance=mel_distance(reference, decoded))
    return out


def align(reference: np.ndarray, decoded: np.ndarray, max_shift_s: float = 0.1, sample_rate: int = 16000) -> np.ndarray:
    """Shift `decoded` to undo a codec's delay, found by cross-correlating log-energy envelopes (1 ms hops).

    Envelopes, not waveforms: parametric codecs (codec2, vocoders, ours) keep no waveform phase, so a
    waveform correlation peak is unreliable for them. Returns `decoded` shifted, same length as `reference`."""
    import scipy.signal

    hop = sample_rate // 1000

    def envelope(x: np.ndarray) -> np.ndarray:
        n = len(x) // hop * hop
        e = np.log((x[:n].reshape(-1, hop) ** 2).mean(1) + 1e-8)
        return e - e.mean()

    a, b = envelope(reference), envelope(decoded)
    n = min(len(a), len(b))
    corr = scipy.signal.correlate(b[:n], a[:n], mode="full", method="fft")
    lags = np.arange(-n + 1, n)
    window = np.abs(lags) <= int(max_shift_s * 1000)
    lag = int(lags[window][np.argmax(corr[window])]) * hop
    shifted = decoded[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, decoded.dtype), decoded])
    out = np.zeros(len(reference), np.float32)
    out[: min(len(out), len(shifted))] = shifted[: len(out)]
    return out
