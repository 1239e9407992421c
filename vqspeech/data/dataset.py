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


def pitch_track(path: str | Path, wav: np.ndarray, hop: int) -> np.ndarray:
    """F0 [ceil(T / hop)] for a prepared file, cached beside it (keyed by hop)."""
    cache = Path(f"{path}.f0-{hop}.npy")
    if cache.exists():
        return np.load(cache)
    f0 = features.extract_pitch(wav, hop).f0
    with atomic_path(cache) as tmp:  # a unique temp name: DDP ranks may fill the same cache at once
        with open(tmp, "wb") as f:  # a file object, since np.save would add ".npy" to a path
            np.save(f, f0)
    return f0


class SpeechDataset:
    """Utterances in memory; `batch` draws random crops aligned to the pitch hop."""

    def __init__(self, rows: list[Utterance], config: ModelConfig, speakers: list[str], crop_samples: int):
        self.config = config
        self.crop = crop_samples
        self.wavs, self.speakers, self.pitch, self.lf0, self.f0 = [], [], [], [], []
        unit = config.pitch_hop
        for row in tqdm(rows, desc="load", unit="file", leave=False):
            wav = audio.load(row.path, normalise_level=False)
            n = max(self.crop, len(wav) // unit * unit)
            wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
            f0 = pitch_track(row.path, wav, unit)[: n // unit] if config.pitch else np.zeros(n // unit, np.float32)
            track = features.Pitch(f0, unit)
            mean, std = track.log_stats()
            self.wavs.append(torch.from_numpy((wav * 32767).astype(np.int16)))
            self.speakers.append(speakers.index(row.speaker))
            self.pitch.append(torch.from_numpy(features.quantise_pitch(track, mean, std, config.pitch_levels, config.pitch_z_range)))
            self.lf0.append((mean, std))
            self.f0.append(f0)
        if not self.wavs:
            raise ValueError("no utterances to train on")

    def __len__(self) -> int:
        return len(self.wavs)

    def crop_at(self, i: int, start: int) -> tuple[torch.Tensor, int, torch.Tensor, tuple[float, float]]:
        unit = self.config.pitch_hop
        wav = self.wavs[i][start : start + self.crop].float() / 32767
        pitch = self.pitch[i][start // unit : (start + self.crop) // unit]
        return wav, self.speakers[i], pitch, self.lf0[i]

    def batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random crops: wav [B, crop], speaker [B], pitch [B, crop // pitch_hop], lf0 [B, 2]."""
        unit = self.config.pitch_hop
        idx = torch.randint(0, len(self), (batch_size,), generator=generator).tolist()
        items = []
        for i in idx:
            n_starts = (len(self.wavs[i]) - self.crop) // unit + 1
            start = int(torch.randint(0, n_starts, (1,), generator=generator)) * unit
            items.append(self.crop_at(i, start))
        return collate(items)

    def fixed_batches(self, batch_size: int, n_batches: int) -> list[dict[str, torch.Tensor]]:
        """Deterministic crops (the start of each utterance, cycling) for comparable validation losses."""
        items = [self.crop_at(i % len(self), 0) for i in range(batch_size * n_batches)]
        return [collate(items[k : k + batch_size]) for k in range(0, len(items), batch_size)]


def collate(items) -> dict[str, torch.Tensor]:
    wav, spk, pitch, lf0 = zip(*items)
    return {"wav": torch.stack(wav), "speaker": torch.tensor(spk), "pitch": torch.stack(pitch), "lf0": torch.tensor(lf0, dtype=torch.float32)}


def speaker_pitch_stats(dataset: SpeechDataset, n_speakers: int) -> torch.Tensor:
    """Per-speaker log-F0 (mean, std) over all voiced frames of that speaker -> [n_speakers, 2]."""
    out = torch.tensor([[float(np.log(150.0)), 0.2]] * n_speakers)
    for s in range(n_speakers):
        f0 = [f for f, spk in zip(dataset.f0, dataset.speakers) if spk == s]
        if f0:
            out[s] = torch.tensor(features.Pitch(np.concatenate(f0), dataset.config.pitch_hop).log_stats())
    return out
