"""On a GPU (skipped where there is none: CI has none; run it on the lent GPU machine): a training step, validation
and the held-out evaluation of each trainer, and inference, with the model on the device."""

import numpy as np
import pytest
import torch

from vqspeech import checkpoint
from vqspeech.config import load_config
from vqspeech.train.loop import Trainer
from vqspeech.train.parallel_loop import ParallelObjective
from vqspeech.train.wavenet_loop import WaveNetObjective
from tests.conftest import DEBUG_OVERLAY, synthetic_voice

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _config(manifest, run, steps, base="", **train):
    return load_config(DEBUG_OVERLAY, overrides={
        "data": {"manifest": str(manifest)},
        "model": {"jitter": 0.1},
        "train": {"run_dir": str(run), "steps": steps, "checkpoint_every": steps, "val_every": steps, "eval_every": steps,
                  "base_model": str(base), **train}})


def test_every_trainer_steps_validates_and_evaluates_on_the_gpu(manifest, tmp_path):
    vqvae = Trainer(_config(manifest, tmp_path / "vqvae", 2))
    assert vqvae.model.device.type == "cuda"
    vqvae.fit()
    assert (tmp_path / "vqvae" / "eval.csv").exists() and (tmp_path / "vqvae" / "valid.csv").exists()
    par = Trainer(_config(manifest, tmp_path / "par", 2, checkpoint.latest_checkpoint(tmp_path / "vqvae"),
                                  joint=True, code_adversary_weight=0.1, speaker_loss_weight=0.1, speaker_classifier_steps=2), objective=ParallelObjective)
    par.fit()
    assert (tmp_path / "par" / "eval.csv").exists()
    wn = Trainer(load_config(DEBUG_OVERLAY, overrides={
        "data": {"manifest": str(manifest)}, "model": {"decoder": {"parallel_input": True}},
        "train": {"run_dir": str(tmp_path / "wn"), "steps": 2, "checkpoint_every": 2, "val_every": 2, "eval_every": 2,
                  "base_model": str(checkpoint.latest_checkpoint(tmp_path / "par"))}}), objective=WaveNetObjective)
    wn.fit()
    assert (tmp_path / "wn" / "eval.csv").exists()


def test_inference_on_the_gpu_matches_the_cpu():
    from tests.conftest import tiny_codec_model

    model, _ = tiny_codec_model(parallel_decoder=True)
    wav = synthetic_voice(0.5, 150, 3)
    on_cpu = model.decode(model.encode(wav), "alice", decoder="parallel", generator=torch.Generator().manual_seed(0))
    model.to("cuda")
    encoded = model.encode(wav)
    assert encoded.codes.device.type == "cpu"
    on_gpu = model.decode(encoded, "alice", decoder="parallel", generator=torch.Generator().manual_seed(0))
    assert np.abs(on_gpu - on_cpu).max() < 1e-3
    assert model.decode(encoded, "alice", decoder="autoregressive").shape == wav.shape
