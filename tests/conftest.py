"""Shared fixtures: tiny model configs and a tiny synthetic corpus, built in the test's temp folder."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from vqspeech import speaker_encoder
from vqspeech.config import Config, load_config
from vqspeech.models.vqvae import VQSpeech
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


def tiny_codec_model(seed: int = 0, speakers: tuple[str, ...] = ("alice", "bob"), lf0: dict | None = None, **model):
    """The tests' one model factory: a tiny untrained model (the debug config; `model` overrides ModelConfig fields,
    e.g. voice="vector") whose codebook is set from encoder outputs of speech-like audio, so that its codes vary.
    lf0: {speaker: (median F0 in Hz, log-F0 std)} for the pitch ranges "measured in training" (default: bob at
    220 Hz). -> (model in eval mode, its Config)."""
    from vqspeech.models.vqvae import VQSpeech

    config = load_config(DEBUG_OVERLAY)
    config.model.n_speakers = len(speakers)
    for key, value in model.items():
        setattr(config.model, key, value)
    torch.manual_seed(seed)
    net = VQSpeech(config.model, list(speakers)).eval()
    with torch.no_grad():
        z = net.encoder(torch.from_numpy(synthetic_voice(1.024, 140, seed))[None, None])[0].T
        net.quantizer.codebook.copy_(z[torch.randperm(z.shape[0])[: config.model.quantizer.codebook_size]])
        for name, (hz, std) in (lf0 if lf0 is not None else {"bob": (220.0, 0.15)}).items():
            net.speaker_lf0[list(speakers).index(name)] = torch.tensor([np.log(hz), std])
    return net, config


def wavenet_setup(**decoder):
    """A tiny untrained model with a parallel decoder and the WaveNet `decoder` options, and what its WaveNet samples
    from for 0.1 s of a synthetic voice: (model, encoded, cond [1, C, F], lf0 [1, 2], rendering [1, F * hop])."""
    from vqspeech.models.vqvae import VQSpeech

    config = load_config(DEBUG_OVERLAY, overrides={"model": {"n_speakers": 2, "parallel_decoder": True, "decoder": decoder}})
    torch.manual_seed(1)
    model = VQSpeech(config.model, ["alice", "bob"]).eval()
    encoded = model.encode(synthetic_voice(0.1, 150, 1))
    with torch.no_grad():
        voice = model.speaker_voice(torch.tensor([0]))
        cond = model.condition(model.quantizer.lookup(encoded.codes[None]), voice, encoded.pitch[None])
        lf0 = torch.tensor([[encoded.lf0_mean, encoded.lf0_std]])
        rendering = model.rendering(cond, encoded.pitch[None], lf0, voice, torch.Generator().manual_seed(0))
    return model, encoded, cond, lf0, rendering


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


# --- vector-voice models and a stand-in for resemblyzer -----------------------------------------------------

_PROJECTION = np.random.default_rng(7).standard_normal((129, speaker_encoder.EMBEDDING_DIM))


def fake_embed(wav: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for resemblyzer: a unit vector from the recording's mean log spectrum, so voices
    of different pitch get different vectors (the real model costs seconds to load, and is tested elsewhere)."""
    wav = np.asarray(wav, np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(wav, (0, max(0, 256 - wav.size))), 256)[::128]
    log_spec = np.log(np.abs(np.fft.rfft(frames * np.hanning(256), axis=1)).mean(0) + 1e-4)
    v = (log_spec - log_spec.mean()) @ _PROJECTION
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def fake_resemblyzer(monkeypatch):
    monkeypatch.setattr(speaker_encoder, "embed", fake_embed)


def vector_model(seed: int = 0) -> VQSpeech:
    model, _ = tiny_codec_model(seed, voice="vector", parallel_decoder=True, lf0={"bob": (110.0, 0.15)})
    with torch.no_grad():
        model.speaker_dvectors.copy_(torch.from_numpy(np.stack([fake_embed(synthetic_voice(1.0, f, 3)) for f in (210, 110)])))
    return model
