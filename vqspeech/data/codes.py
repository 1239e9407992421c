"""The code streams a frozen model makes of a corpus: what the prior over the codes learns from.

One token stream per utterance, in the order the .vqs carries and the range coder codes it: for each pitch
frame, its pitch symbol, then its `pitch_frames` codes (model v3: 1 + 4 tokens per 256 samples, 312.5 a second).
One alphabet for both: codes are 0..K-1, pitch symbols K..K+L-1; a model without pitch has codes only.

    tokens_of(codes, pitch, layout) -> tokens   the interleaving, and its inverse split_tokens
    CodeCorpus                                  a corpus's streams (train/prior_loop.extract_codes writes it)

The cache holds, per utterance, the tokens and the voice the decoder renders the file in by default (the voice
vector the file carries, else the row of the speaker it names): the prior is conditioned on what a decoder of the
file has before it reads the payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TokenLayout:
    """How codes and pitch symbols share one alphabet and one sequence."""

    codebook_size: int  # K
    pitch_levels: int  # L, 0 without pitch
    pitch_frames: int  # codes per pitch symbol

    @property
    def vocab(self) -> int:
        return self.codebook_size + self.pitch_levels

    @property
    def period(self) -> int:
        """Tokens per pitch frame (1 without pitch: every token is a code)."""
        return self.pitch_frames + 1 if self.pitch_levels else 1

    def is_pitch(self, positions: np.ndarray) -> np.ndarray:
        """positions [N] (0-based, in a stream) -> bool [N]: which carry a pitch symbol."""
        return (np.asarray(positions) % self.period == 0) if self.pitch_levels else np.zeros(np.shape(positions), bool)

    @classmethod
    def of(cls, model_config) -> "TokenLayout":
        c = model_config
        if c.quantizer.top_codebook_size:  # nothing lays the top codes into the stream yet
            raise ValueError("a prior over codes at two rates is not built: the token stream has no place for the "
                             "top codes (model.quantizer.top_codebook_size)")
        return cls(c.quantizer.codebook_size, c.pitch_levels if c.pitch else 0, c.pitch_frames)


def tokens_of(codes: np.ndarray, pitch: np.ndarray | None, layout: TokenLayout) -> np.ndarray:
    """codes [F], pitch [F // pitch_frames] or None -> tokens int64 [F + F // pitch_frames]."""
    codes = np.asarray(codes, np.int64)
    if not layout.pitch_levels:
        return codes.copy()
    n = len(pitch)
    if len(codes) != n * layout.pitch_frames:
        raise ValueError(f"{len(codes)} codes for {n} pitch symbols of {layout.pitch_frames} codes each")
    frames = np.concatenate([np.asarray(pitch, np.int64)[:, None] + layout.codebook_size,
                             codes.reshape(n, layout.pitch_frames)], 1)
    return frames.reshape(-1)


def split_tokens(tokens: np.ndarray, layout: TokenLayout) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of tokens_of: tokens [N] -> (codes [F], pitch [F // pitch_frames] or None)."""
    tokens = np.asarray(tokens, np.int64)
    if not layout.pitch_levels:
        return tokens.copy(), None
    if len(tokens) % layout.period:
        raise ValueError(f"{len(tokens)} tokens are not a whole number of pitch frames of {layout.period}")
    frames = tokens.reshape(-1, layout.period)
    return frames[:, 1:].reshape(-1), frames[:, 0] - layout.codebook_size


def default_speaker(model, header) -> str | None:
    """The training speaker a decoder renders this file in when asked for nothing else, None for the voice vector
    the file carries (a vector-voice model's file): the speaker it names if the model knows them, else the model's
    first. codec.api, the prior's conditioning and `vqspeech continue` all take this choice."""
    if header.voice is not None and model.config.voice == "vector":
        return None
    return header.speaker if header.speaker in model.speaker_names else model.speaker_names[0]


def default_voice(model, header) -> np.ndarray:
    """The voice vector [speaker_dim] float32 of default_speaker: the file's own, or that training speaker's."""
    import torch

    name = default_speaker(model, header)
    if name is None:
        return np.asarray(header.voice, np.float32)
    with torch.no_grad():
        return model.speaker_voice(torch.tensor([model.speaker_names.index(name)]))[0].float().numpy()


@dataclass
class CodeCorpus:
    """A corpus as token streams: tokens[i] int16 [N_i], voices [U, speaker_dim], and who said what."""

    tokens: list[np.ndarray]
    voices: np.ndarray
    speakers: list[str]
    corpora: list[str]
    splits: list[str]
    fingerprint: str

    def save(self, path: Path) -> None:
        lengths = np.array([len(t) for t in self.tokens], np.int64)
        np.savez(path, tokens=np.concatenate(self.tokens).astype(np.int16), lengths=lengths, voices=self.voices,
                 speakers=np.array(self.speakers), corpora=np.array(self.corpora), splits=np.array(self.splits),
                 fingerprint=np.array(self.fingerprint))

    @classmethod
    def load(cls, path: Path) -> "CodeCorpus":
        with np.load(path, allow_pickle=False) as z:
            bounds = np.cumsum(np.concatenate([[0], z["lengths"]]))
            flat = z["tokens"].astype(np.int64)
            return cls([flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])], z["voices"], z["speakers"].tolist(),
                       z["corpora"].tolist(), z["splits"].tolist(), str(z["fingerprint"]))

    def extend(self, other: "CodeCorpus") -> "CodeCorpus":
        """These utterances, then `other`'s (codes of the same model)."""
        if other.fingerprint != self.fingerprint:
            raise ValueError(f"codes of model {other.fingerprint} added to codes of {self.fingerprint}")
        return CodeCorpus(self.tokens + other.tokens, np.concatenate([self.voices, other.voices]),
                          self.speakers + other.speakers, self.corpora + other.corpora, self.splits + other.splits,
                          self.fingerprint)

    def select(self, keep) -> "CodeCorpus":
        """The utterances for which keep(i) is true."""
        idx = [i for i in range(len(self.tokens)) if keep(i)]
        return CodeCorpus([self.tokens[i] for i in idx], self.voices[idx], [self.speakers[i] for i in idx],
                          [self.corpora[i] for i in idx], [self.splits[i] for i in idx], self.fingerprint)

