"""Shared fixtures: tiny model configs and a tiny synthetic corpus, built in the test's temp folder."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from vqspeech.config import Config, load_config
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEBUG_OVERLAY = REPO / "recipes" / "conf" / "debug.yaml"

torch.set_num_threads(1)


def synthetic_voice(seconds: float, f0: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """A speech-like test signal: voiced stretches (harmonics of a gliding F0 under a syllable envelope)
    separated by noise bursts, so it has voicing, pitch and unvoiced frames."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.5 * t + seed))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 3 * t + seed)) ** 2
    noise = rng.standard_normal(n) * 0.3
    gate = (np.sin(2 * np.pi * 3 * t + seed) > 0.6).astype(float)
    return (0.3 * (voiced * syllables * (1 - gate) + noise * gate)).astype(np.float32)


def tiny_codec_model(seed: int):
    """A tiny untrained table-voice model (speakers alice, bob) whose codebook is set from encoder outputs of
    speech-like audio, so that its codes vary -> (model in eval mode, its Config)."""
    from vqspeech.models.vqvae import VQSpeech

    config = load_config(DEBUG_OVERLAY)
    config.model.n_speakers = 2
    torch.manual_seed(seed)
    model = VQSpeech(config.model, ["alice", "bob"]).eval()
    with torch.no_grad():
        z = model.encoder(torch.from_numpy(synthetic_voice(1.024, 140, seed))[None, None])[0].T
        model.quantizer.codebook.copy_(z[torch.randperm(z.shape[0])[: config.model.quantizer.codebook_size]])
    model.speaker_lf0[1] = torch.tensor([np.log(220.0), 0.15])
    return model, config


@pytest.fixture
def tiny_config() -> Config:
    config = load_config(DEBUG_OVERLAY)
    config.model.n_speakers = 2
    return config


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """ROOT/<speaker>/*.wav: 2 speakers x 3 files of 1 s."""
    root = tmp_path / "corpus"
    for s, (name, f0) in enumerate([("alice", 210.0), ("bob", 110.0)]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            sf.write(root / name / f"{name}_{i:03d}.wav", synthetic_voice(1.0, f0, seed=10 * s + i), 16000)
    return root


@pytest.fixture
def manifest(tmp_path, corpus_dir) -> Path:
    from vqspeech.data import corpora
    from vqspeech.data.prepare import prepare

    path, problems = prepare(corpora.folder_per_speaker(corpus_dir, valid_per_speaker=1), tmp_path / "prepared")
    assert problems == []
    return path
