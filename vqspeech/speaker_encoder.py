"""Speaker embeddings from a pretrained speaker-verification model, and the training speakers' centroids.

The model is resemblyzer's d-vector network (GE2E, a 3-layer LSTM over 40-band mels -> 256-d unit vectors);
its weights ship inside its wheel, so nothing is downloaded at run time. Two uses:
  - unseen voices (vqspeech.conversion, methods "blend" and "ridge"): a reference's d-vector is compared
    with the training speakers' centroids, stored in a small side file (the VoiceBank) beside the model,
    because the user converting a file does not have the training corpus;
  - evaluation: speaker identification by the nearest centroid (vqspeech.eval.speaker_id).

    embed(wav) -> [256]           one utterance
    embed_speaker(wavs) -> [256]  several utterances of one voice (mean of unit vectors, renormalised)
    embed_batch(wav) -> [B, 256]  crops as a tensor, differentiable (training's voice loss): one pass of the
                                  network over each whole crop, no VAD, no partial windows
    VoiceBank.build / save / load centroids of a model's training speakers (they describe the speakers'
                                  recordings, not the model, so any model with the same speakers can use them)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # resemblyzer's rate; the model's too (checked by callers that resample)
EMBEDDING_DIM = 256
INSTALL_HINT = "pip install webrtcvad-wheels 'resemblyzer==0.1.4' --no-deps (see the vc extra in pyproject.toml)"


class SpeakerEncoderUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as e:
        raise SpeakerEncoderUnavailable(f"speaker embeddings need resemblyzer ({e}); install it: {INSTALL_HINT}") from None
    return VoiceEncoder("cpu", verbose=False)


def available() -> bool:
    try:
        _encoder()
    except SpeakerEncoderUnavailable:
        return False
    return True


def embed(wav: np.ndarray) -> np.ndarray:
    """float32 [T] at 16 kHz -> unit d-vector [256].

    resemblyzer's own preprocessing (volume up to -30 dBFS, long pauses cut by a VAD) first; a clip the VAD
    finds no speech in is embedded whole rather than refused: it still has a voice, only a quiet one. Then what
    VoiceEncoder.embed_utterance does (1.6 s partial windows at its default rate and coverage, their embeddings
    averaged), with the mel features computed here: resemblyzer's come from librosa, whose import costs over a
    second of every `vqspeech encode` that records the nearest voice."""
    import torch
    from resemblyzer import preprocess_wav

    encoder = _encoder()
    wav = np.asarray(wav, np.float32)
    trimmed = preprocess_wav(wav)
    if len(trimmed) < SAMPLE_RATE // 4:
        trimmed = wav
    wav_slices, mel_slices = encoder.compute_partial_slices(len(trimmed), rate=1.3, min_coverage=0.75)
    trimmed = np.pad(trimmed, (0, max(0, wav_slices[-1].stop - len(trimmed))))
    mel = _mels(torch.from_numpy(trimmed.astype(np.float32))[None])[0]
    with torch.no_grad():
        partials = encoder(torch.stack([mel[s] for s in mel_slices]))
    mean = partials.mean(0)
    return (mean / mean.norm()).numpy().astype(np.float32)


_TARGET_RMS = 10 ** (-30 / 20)  # resemblyzer's volume normalisation (audio_norm_target_dBFS)


@functools.lru_cache(maxsize=1)
def _mel_filters():
    """resemblyzer's mel filterbank [40, 201]: librosa.filters.mel(sr=16000, n_fft=400, n_mels=40), from the copy
    beside this module (tests/test_any_voice.py checks it against librosa), so that start-up does not import
    librosa."""
    import torch

    return torch.from_numpy(np.load(Path(__file__).with_name("resemblyzer_mel.npy")))


def _mels(wav):
    """wav [B, T] float tensor at 16 kHz -> [B, frames, 40]: resemblyzer's features (librosa's melspectrogram of
    the power spectrum, 25 ms Hann windows every 10 ms, centred, zero-padded)."""
    import torch

    window = torch.hann_window(400, device=wav.device)
    spec = torch.stft(wav, 400, 160, 400, window, center=True, pad_mode="constant", return_complex=True).abs().pow(2)
    return (_mel_filters().to(wav.device) @ spec).transpose(1, 2)


def embed_batch(wav):
    """wav [B, T] float tensor at 16 kHz -> unit d-vectors [B, 256], differentiable with respect to wav.

    resemblyzer's network on resemblyzer's mel features of each whole crop, each crop first scaled to -30 dBFS RMS
    as resemblyzer's preprocessing does (its VAD is left out: crops are short). The network's weights are frozen."""
    encoder = _encoder()
    encoder.requires_grad_(False).eval()
    encoder.to(wav.device)
    wav = wav * (_TARGET_RMS / wav.pow(2).mean(-1, keepdim=True).clamp_min(1e-10).sqrt())
    return encoder(_mels(wav))


def embed_speaker(wavs: list[np.ndarray]) -> np.ndarray:
    """Several utterances of one voice -> unit d-vector [256] (mean of the utterances' vectors, renormalised)."""
    if not wavs:
        raise ValueError("no utterances to embed")
    mean = np.mean([embed(w) for w in wavs], axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


@dataclass
class VoiceBank:
    """Centroid d-vectors of a model's training speakers, rows in the order of `names`."""

    names: list[str]
    centroids: np.ndarray  # [S, 256] unit rows

    @classmethod
    def build(cls, names: list[str], utterances: dict[str, list[np.ndarray]]) -> "VoiceBank":
        """names: the model's speakers in table order; utterances: name -> waveforms (16 kHz) of that speaker."""
        missing = [n for n in names if not utterances.get(n)]
        if missing:
            raise ValueError(f"no enrolment audio for speaker(s) {', '.join(missing)}")
        return cls(list(names), np.stack([embed_speaker(utterances[n]) for n in names]))

    @classmethod
    def enroll(cls, names: list[str], corpus: Path, per_speaker: int, sample_rate: int) -> "VoiceBank":
        """A bank from the first `per_speaker` audio files (by name) of each speaker's folder CORPUS/<name>/."""
        from vqspeech import audio

        utterances = {}
        for name in names:
            folder = corpus / name
            files = sorted(f for f in folder.glob("*") if f.suffix.lower() in audio.AUDIO_EXTENSIONS) if folder.is_dir() else []
            if not files:
                raise FileNotFoundError(f"{folder}: no audio for speaker {name}")
            utterances[name] = [audio.load(f, sample_rate) for f in files[:per_speaker]]
        return cls.build(names, utterances)

    def save(self, path: str | Path) -> None:
        """Write as .npz (plain arrays, no pickles) atomically."""
        from vqspeech.fileio import atomic_path

        with atomic_path(Path(path), overwrite=True) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
            np.savez(f, names=np.array(self.names), centroids=self.centroids.astype(np.float32))

    @classmethod
    def load(cls, path: str | Path, model=None) -> "VoiceBank":
        """Read a bank; with `model`, refuse one made for other speakers than the model's."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such voice bank")
        try:
            with np.load(path, allow_pickle=False) as f:
                bank = cls([str(n) for n in f["names"]], f["centroids"].astype(np.float32))
        except Exception as e:  # zip, key and format errors all mean the same to the user
            raise ValueError(f"{path}: not a voice bank ({str(e).splitlines()[0][:120]})") from None
        if len(bank.names) != len(bank.centroids):
            raise ValueError(f"{path}: not a voice bank ({len(bank.names)} names, {len(bank.centroids)} centroids)")
        if model is not None and bank.names != list(model.speaker_names):
            raise ValueError(f"{path}: this voice bank is for speakers {', '.join(bank.names)}, not this model's "
                             "(rebuild it with `vqspeech speakers --enroll`)")
        return bank


def bank_path(model_path: str | Path) -> Path:
    """Where a model's voice bank lives: beside it, MODEL.voices.npz."""
    return Path(model_path).with_suffix(".voices.npz")
