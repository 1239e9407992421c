"""Checkpoints: everything needed to rebuild the model from the file alone, written atomically.

A checkpoint is a plain dict of tensors and primitives, so it loads with ``weights_only=True``:
    format, version, config (the whole Config as a dict), speakers, speaker_info, step, cpu_seconds,
    model (state dict), and for resuming: optimizer, scheduler, generator.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

import vqspeech
from vqspeech.config import ModelConfig, from_dict
from vqspeech.models.vqvae import VQSpeech

FORMAT = "vqspeech-checkpoint"


class CheckpointError(ValueError):
    pass


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` (plus format and version) to a temporary file beside `path`, then rename: a crash
    at any moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"format": FORMAT, "version": vqspeech.__version__, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable vqspeech model ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vqspeech model file")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> VQSpeech:
    config = from_dict(ModelConfig, ckpt["config"]["model"])
    model = VQSpeech(config, ckpt["speakers"])
    model.load_state_dict(ckpt["model"])  # strict: a mismatch is an error, never silently ignored
    model.float()
    model.speaker_info = ckpt.get("speaker_info") or {}  # name -> {gender, accent, region}, where the corpus said
    return model


def load_model(path: str | Path) -> VQSpeech:
    """Rebuild a VQSpeech from a checkpoint or a shipped model file, in eval mode."""
    model = model_from_checkpoint(load_checkpoint(path))
    model.eval()
    return model


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(run_dir).glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return ckpts[-1] if ckpts else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    ckpts = sorted(Path(run_dir).glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for old in ckpts[:-keep]:
        old.unlink()
