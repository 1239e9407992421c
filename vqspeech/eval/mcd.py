"""Mel-cepstral distance between two recordings of the same sentence, aligned by DTW.

Mel-cepstra here are librosa's: the DCT of the natural log of a 40-band mel amplitude spectrum (25 ms
Hann windows every 5 ms), scaled as cepstra (log|X(w)| = c0 + 2 sum c_n cos(n w) on the mel axis, i.e.
the orthonormal DCT over sqrt(2 * bands)), coefficients 1..24 (c0, the loudness, left out), on audio
whose leading and trailing silence is trimmed (30 dB below the peak). This is the MFCC route, not SPTK's
all-pass-warped mel-cepstrum (pysptk and pyworld need pkg_resources or a source build here), so the
figures are comparable with each other, not with MCD values in papers. The DTW is librosa's.

    mel_cepstrum(wav) -> [N, 24]
    mcd(a, b) -> dB       two cepstrum sequences, DTW-aligned (Euclidean), averaged along the path
"""

from __future__ import annotations

import numpy as np

ORDER = 24
N_MELS = 40
WINDOW = 400  # 25 ms at 16 kHz
HOP = 80  # 5 ms
TRIM_DB = 30.0
_DB = 10 / np.log(10) * np.sqrt(2)  # the usual MCD constant: dB from natural-log cepstral distance


def mel_cepstrum(wav: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """float32 [T] -> mel-cepstra [N, ORDER] (c1..c24), leading/trailing silence trimmed."""
    import librosa
    import scipy.fft

    wav = np.asarray(wav, np.float32)
    trimmed, _ = librosa.effects.trim(wav, top_db=TRIM_DB, frame_length=WINDOW, hop_length=HOP)
    if len(trimmed) >= WINDOW:
        wav = trimmed
    mel = librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_fft=512, win_length=WINDOW, hop_length=HOP,
                                         n_mels=N_MELS, power=1.0, fmin=0.0, fmax=sample_rate / 2)
    cep = scipy.fft.dct(np.log(np.maximum(mel, 1e-5)), type=2, norm="ortho", axis=0) / np.sqrt(2 * N_MELS)
    return cep[1 : ORDER + 1].T.astype(np.float64)


def mcd(a: np.ndarray, b: np.ndarray) -> float:
    """Mel-cepstra a [N, D], b [M, D] -> mean distance in dB along the DTW path."""
    import librosa

    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    diff = a[path[:, 0]] - b[path[:, 1]]
    return float(_DB * np.sqrt((diff**2).sum(axis=1)).mean())


def mcd_wav(a: np.ndarray, b: np.ndarray, sample_rate: int = 16000) -> float:
    return mcd(mel_cepstrum(a, sample_rate), mel_cepstrum(b, sample_rate))
