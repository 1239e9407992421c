"""In-memory training data: every prepared utterance with its pitch track, random aligned crops.

VCC 2016 is 1.6 h (185 MB as int16): holding it in memory keeps the 2 cores busy with the model, not I/O.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vqspeech import audio, features
from vqspeech.config import ModelConfig
from vqspeech.data.manifest import Utterance
from vqspeech.fileio import atomic_path


def _cached(cache: Path, make) -> np.ndarray:
    """The array in `cache`, or make() written there first (atomically: DDP ranks may fill one cache at once)."""
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    value = make()
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:  # a file object, since np.save would add ".npy" to a path
            np.save(f, value)
    return value


def pitch_track(path: str | Path, wav: np.ndarray, hop: int, sample_rate: int = 16000) -> np.ndarray:
    """F0 [ceil(T / hop)] for a prepared file at `sample_rate`, cached beside it (keyed by hop, and by the rate
    where it is not 16 kHz, so that the caches of our 16 kHz models keep their names)."""
    rate = "" if sample_rate == 16000 else f"-{sample_rate}"
    return _cached(Path(f"{path}.f0-{hop}{rate}.npy"), lambda: features.extract_pitch(wav, hop, sample_rate).f0)


def dvector(path: str | Path, wav: np.ndarray) -> np.ndarray:
    """The utterance's speaker d-vector [256] (speaker_encoder.embed), cached beside the prepared file."""
    from vqspeech import speaker_encoder

    return _cached(Path(f"{path}.dvec.npy"), lambda: speaker_encoder.embed(wav))


class SpeechDataset:
    """Utterances in memory; `batch` draws random crops aligned to the pitch hop.

    corpus_weights: {corpus: weight}: an utterance is drawn by first drawing its corpus with these weights (a
    corpus the dict does not name weighs 1), then one of the corpus's utterances uniformly, so a small corpus
    is not drowned by a large one. voice_swap: for voice="vector" models, the probability that a crop comes
    with the d-vector of another utterance of its speaker instead of its own, so the decoder learns the
    speaker from the vector, not the recording's channel or the words."""

    def __init__(self, rows: list[Utterance], config: ModelConfig, speakers: list[str], crop_samples: int,
                 corpus_weights: dict[str, float] | None = None, voice_swap: float = 0.0):
        self.config = config
        self.crop = crop_samples
        self.voice_swap = voice_swap
        self.wavs, self.speakers, self.pitch, self.lf0, self.f0, self.dvectors = [], [], [], [], [], []
        unit = config.pitch_hop
        corpora = sorted({r.corpus for r in rows})
        weights = corpus_weights or {}
        unknown = set(weights) - set(corpora)
        if unknown:
            raise ValueError(f"data.corpus_weights names {sorted(unknown)}, not corpora of this manifest ({corpora})")
        # Per-utterance draw probabilities: corpus weight shared evenly among the corpus's utterances.
        count = {c: sum(r.corpus == c for r in rows) for c in corpora}
        p = np.array([weights.get(r.corpus, 1.0) / count[r.corpus] for r in rows], np.float64)
        self.draw_p = torch.from_numpy(p / p.sum()) if rows and p.sum() > 0 else None
        for row in tqdm(rows, desc="load", unit="file", leave=False):
            wav = audio.load(row.path, config.sample_rate, normalise_level=False)  # the model's rate, whatever the files'
            if config.voice == "vector":
                self.dvectors.append(torch.from_numpy(dvector(row.path, wav)))
            n = max(self.crop, len(wav) // unit * unit)
            wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
            f0 = pitch_track(row.path, wav, unit, config.sample_rate)[: n // unit] if config.pitch else np.zeros(n // unit, np.float32)
            track = features.Pitch(f0, unit)
            mean, std = track.log_stats()
            self.wavs.append(torch.from_numpy((wav * 32767).astype(np.int16)))
            self.speakers.append(speakers.index(row.speaker))
            self.pitch.append(torch.from_numpy(features.quantise_pitch(track, mean, std, config.pitch_levels, config.pitch_z_range)))
            self.lf0.append((mean, std))
            self.f0.append(f0)
        if not self.wavs:
            raise ValueError("no utterances to train on")
        self.by_speaker: dict[int, list[int]] = {}
        for i, spk in enumerate(self.speakers):
            self.by_speaker.setdefault(spk, []).append(i)

    def __len__(self) -> int:
        return len(self.wavs)

    def crop_at(self, i: int, start: int, voice_of: int | None = None) -> tuple:
        """(wav [crop], speaker, pitch [crop // pitch_hop], lf0 (mean, std), d-vector [256] or None) of utterance
        i from `start`; the d-vector is utterance `voice_of`'s (default i's own)."""
        unit = self.config.pitch_hop
        wav = self.wavs[i][start : start + self.crop].float() / 32767
        pitch = self.pitch[i][start // unit : (start + self.crop) // unit]
        dvec = self.dvectors[i if voice_of is None else voice_of] if self.dvectors else None
        return wav, self.speakers[i], pitch, self.lf0[i], dvec

    def batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random crops: wav [B, crop], speaker [B], pitch [B, crop // pitch_hop], lf0 [B, 2], dvector [B, 256]
        (voice="vector" models)."""
        unit = self.config.pitch_hop
        idx = torch.multinomial(self.draw_p, batch_size, replacement=True, generator=generator).tolist()
        items = []
        for i in idx:
            n_starts = (len(self.wavs[i]) - self.crop) // unit + 1
            start = int(torch.randint(0, n_starts, (1,), generator=generator)) * unit
            voice_of = None
            if self.voice_swap > 0 and float(torch.rand(1, generator=generator)) < self.voice_swap:
                same = self.by_speaker[self.speakers[i]]
                voice_of = same[int(torch.randint(0, len(same), (1,), generator=generator))]
            items.append(self.crop_at(i, start, voice_of))
        return collate(items)

    def fixed_batches(self, batch_size: int, n_batches: int) -> list[dict[str, torch.Tensor]]:
        """Deterministic crops (the start of each utterance, cycling) for comparable validation losses."""
        items = [self.crop_at(i % len(self), 0) for i in range(batch_size * n_batches)]
        return [collate(items[k : k + batch_size]) for k in range(0, len(items), batch_size)]


def collate(items) -> dict[str, torch.Tensor]:
    wav, spk, pitch, lf0, dvec = zip(*items)
    batch = {"wav": torch.stack(wav), "speaker": torch.tensor(spk), "pitch": torch.stack(pitch), "lf0": torch.tensor(lf0, dtype=torch.float32)}
    if dvec[0] is not None:
        batch["dvector"] = torch.stack(dvec)
    return batch


def speaker_dvectors(dataset: SpeechDataset, n_speakers: int) -> torch.Tensor:
    """Per-speaker mean d-vector over their utterances, renormalised to unit length -> [n_speakers, 256]."""
    out = torch.zeros(n_speakers, dataset.dvectors[0].shape[0])
    for s, idx in dataset.by_speaker.items():
        mean = torch.stack([dataset.dvectors[i] for i in idx]).mean(0)
        out[s] = mean / mean.norm().clamp_min(1e-8)
    return out


def speaker_pitch_stats(dataset: SpeechDataset, n_speakers: int) -> torch.Tensor:
    """Per-speaker log-F0 (mean, std) over all voiced frames of that speaker -> [n_speakers, 2]."""
    out = torch.tensor([[float(np.log(150.0)), 0.2]] * n_speakers)
    for s in range(n_speakers):
        f0 = [f for f, spk in zip(dataset.f0, dataset.speakers) if spk == s]
        if f0:
            out[s] = torch.tensor(features.Pitch(np.concatenate(f0), dataset.config.pitch_hop).log_stats())
    return out
