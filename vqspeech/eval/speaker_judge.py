"""A speaker judge that owes nothing to resemblyzer: MFCC statistics and a linear discriminant, fitted on the
benchmark's own recordings of the speakers it must tell apart.

vqspeech conditions its decoder on resemblyzer d-vectors, so a benchmark that also identifies speakers with
resemblyzer grades the model with its own teacher. This judge is the second opinion: each utterance becomes the
mean and standard deviation of its 20 MFCCs (c1..c20) and their deltas over its louder frames (80 numbers; the
classic text-independent speaker features, long before neural embeddings), scaled, and classified by scikit-learn's
linear discriminant analysis with Ledoit-Wolf shrinkage (few utterances per speaker, many dimensions). It is a weak
judge, and a channel-sensitive one: check its ceiling (`leave_one_out`) on real recordings before reading its
verdict on decoded ones.

    judge = SpeakerJudge.fit({speaker: [wav, ...]})
    judge.identify(wav) -> speaker
    leave_one_out({speaker: [wav, ...]}) -> accuracy on real recordings
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_MFCC = 20
TOP_DB = 30.0  # frames more than this below the utterance's loudest are left out (pauses, breath)


def features(wav: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """float32 [T] -> [80]: mean and std of MFCC c1..c20 and their deltas over the frames within TOP_DB of the peak."""
    import librosa

    wav = np.asarray(wav, np.float32)
    mfcc = librosa.feature.mfcc(y=wav, sr=sample_rate, n_mfcc=N_MFCC + 1, n_fft=512, win_length=400, hop_length=160)
    energy = librosa.feature.rms(y=wav, frame_length=400, hop_length=160)[0][: mfcc.shape[1]]
    db = 20 * np.log10(np.maximum(energy, 1e-8))
    keep = db >= db.max() - TOP_DB
    c = mfcc[1:, : keep.size][:, keep]
    if c.shape[1] < 3:  # all but silent: use every frame rather than none
        c = mfcc[1:]
    d = librosa.feature.delta(c, width=3) if c.shape[1] >= 3 else np.zeros_like(c)
    return np.concatenate([c.mean(1), c.std(1), d.mean(1), d.std(1)]).astype(np.float64)


@dataclass
class SpeakerJudge:
    names: list[str]
    model: object  # a fitted sklearn Pipeline

    @classmethod
    def fit(cls, recordings: dict[str, list[np.ndarray]]) -> "SpeakerJudge":
        """recordings: speaker -> waveforms (16 kHz), at least two speakers, at least one waveform each."""
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        names = sorted(recordings)
        if len(names) < 2 or any(not recordings[n] for n in names):
            raise ValueError("a speaker judge needs at least two speakers with recordings each")
        x = np.stack([features(w) for n in names for w in recordings[n]])
        y = [n for n in names for _ in recordings[n]]
        model = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))
        model.fit(x, y)
        return cls(names, model)

    def identify(self, wav: np.ndarray) -> str:
        return str(self.model.predict(features(wav)[None])[0])


def leave_one_out(recordings: dict[str, list[np.ndarray]]) -> float:
    """The judge's ceiling: each real recording identified by a judge fitted on all the others."""
    hits, total = 0, 0
    for name, wavs in recordings.items():
        for i in range(len(wavs)):
            rest = {n: [w for j, w in enumerate(ws) if n != name or j != i] for n, ws in recordings.items()}
            hits += SpeakerJudge.fit(rest).identify(wavs[i]) == name
            total += 1
    return hits / total
