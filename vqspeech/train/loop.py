"""The training loop (Trainer) and the VQ-VAE's objective (Objective): the loop runs any objective, the parallel
decoder's (parallel_loop) and the WaveNet's alone (wavenet_loop) too."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vqspeech import audio
from vqspeech.config import Config, ModelConfig, from_dict, to_dict
from vqspeech.fileio import remove_stale_temporaries
from vqspeech.data.dataset import SpeechDataset, speaker_dvectors, speaker_pitch_stats
from vqspeech.data.manifest import read_manifest, read_speakers
from vqspeech.models.vqvae import VQSpeech
from vqspeech import checkpoint
from vqspeech.precision import native_bf16
from vqspeech.train import distributed
from vqspeech.train.fit import Every, Optimisation, RunProgress, append_row, fit

log = logging.getLogger(__name__)


def measure_speakers(model: VQSpeech, train_set: SpeechDataset) -> None:
    """Fill the model's per-speaker pitch ranges (and, for voice="vector", mean d-vectors) from the training data."""
    n = model.config.n_speakers
    model.speaker_lf0.copy_(speaker_pitch_stats(train_set, n))
    if model.config.voice == "vector":
        model.speaker_dvectors.copy_(speaker_dvectors(train_set, n))


class Objective:
    """One kind of training, given to the Trainer (composition): the model it trains, which of its parts, and its loss.
    The Trainer owns the rest (data, optimizer, checkpoints, resume, validation, logging, DDP) and sets an objective
    up in one fixed order, in one place (Trainer.__init__):
      1. build_model(speakers): the model (a base model may decide the model config that the data is read with);
      2. prepare(train_set, valid_set): what needs the data (speakers' pitch ranges, a judge, an adversary), and
         `trained` (whose parameters Adam steps and DDP wraps), `clipped` ({metric prefix: module}, each clipped
         to train.grad_clip on its own) and `frozen` (parts of `trained` kept in eval mode while it trains).
    After that `loss`, `state` and `restore` (what checkpoints record beyond the model) only read what those made.
    This class is the VQ-VAE's objective: the whole model by the WaveNet's cross-entropy and the code terms."""

    eval_decoder = "autoregressive"  # what held-out generation during training decodes with

    def __init__(self, config: Config):
        self.config = config
        self.model: VQSpeech | None = None
        self.trained: torch.nn.Module | None = None
        self.clipped: dict[str, torch.nn.Module] = {}
        self.frozen: list[torch.nn.Module] = []

    def build_model(self, speakers: list[str]) -> VQSpeech:
        self.config.model.n_speakers = len(speakers)
        self.model = VQSpeech(self.config.model, speakers)
        return self.model

    def prepare(self, train_set: SpeechDataset, valid_set: SpeechDataset | None) -> None:
        # Each training speaker's pitch range (and mean d-vector), measured on the training data: conversion to a
        # training speaker renders in them.
        measure_speakers(self.model, train_set)
        self.trained, self.clipped = self.model, {"": self.model}

    def loss(self, net: torch.nn.Module, batch: dict) -> tuple[dict, dict]:
        """(weighted loss terms, metrics) for one batch; `net` is `trained` or its DDP wrapper."""
        return net(**batch)

    def state(self) -> dict:
        """More entries for the checkpoint (primitives, or tensors such as a state dict) than the model."""
        return {}

    def restore(self, ckpt: dict, run_dir: Path) -> None:
        """On resume, take back what state() wrote beyond its primitives (e.g. an auxiliary network)."""


class Trainer(RunProgress):
    """The fit loop, for any Objective: random crops, Adam with warmup + cosine decay, clipping, bf16 autocast,
    validation, held-out generation metrics, TensorBoard, atomic checkpoints and exact resume."""

    def __init__(self, config: Config, resume: bool = False, objective: type[Objective] = Objective):
        """`objective`: the kind of training (Objective, the VQ-VAE's, or a subclass), built here on `config`."""
        self.config = config
        self.rank, self.world = distributed.init()
        self.device = distributed.device(self.rank)
        t = config.train
        # train.bf16 asks for bfloat16 autocast where the hardware has it; emulated, it is far slower than float32.
        self.bf16 = t.bf16 and native_bf16(self.device)
        if t.bf16 and not self.bf16:
            log.warning("train.bf16: this %s has no native bfloat16; training in float32 (emulated bf16 is ~16x slower)",
                        self.device.type.upper())
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        self.run_dir = Path(t.run_dir)
        if not resume and checkpoint.latest_checkpoint(self.run_dir) is not None:
            # A fresh run here would interleave its checkpoints and CSV rows with the old run's.
            raise ValueError(f"{self.run_dir}: holds checkpoints of an earlier run; continue it with --resume, or give a new run_dir")
        if not config.data.manifest:
            raise ValueError("data.manifest: not set; give the training manifest (--set data.manifest=PATH/manifest.csv)")
        rows = read_manifest(config.data.manifest)  # before the run folder exists: a wrong path leaves nothing behind
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir)
        known = read_speakers(Path(config.data.manifest).parent / "speakers.csv")
        train_rows = [r for r in rows if r.split == "train"]
        speakers = sorted({r.speaker for r in train_rows})
        self.objective = objective(config)
        self.model = self.objective.build_model(speakers)  # may replace config.model (a frozen base model's)
        self.model.speaker_info = {s: {"gender": known[s].gender, "accent": known[s].accent, "region": known[s].region, "age": known[s].age}
                                   for s in speakers if s in known}
        self.model.to(self.device)
        valid_rows = [r for r in rows if r.split == "valid" and r.speaker in speakers]
        self.train_set = SpeechDataset(train_rows, config.model, speakers, config.data.crop_samples,
                                       config.data.corpus_weights, config.data.voice_swap)
        self.valid_set = SpeechDataset(valid_rows, config.model, speakers, config.data.crop_samples) if valid_rows else None
        self.valid_rows = valid_rows
        self.objective.prepare(self.train_set, self.valid_set)
        # All of the trained module's parameters (Adam skips those without gradients, e.g. an EMA codebook),
        # so the optimizer's state lines up with checkpoints whatever requires_grad says.
        self.optimisation = Optimisation(config, self.objective.trained.parameters(), self.objective.clipped,
                                         device_type=self.device.type, bf16=self.bf16)
        self.generator = torch.Generator().manual_seed(t.seed + self.rank)
        if resume:
            self._resume()
        self.ddp = (DistributedDataParallel(self.objective.trained, broadcast_buffers=False) if self.world > 1 else None)
        self.compiled = torch.compile(self.ddp or self.objective.trained) if self.config.train.compile else None
        self.writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step or None)

    def compute(self, net: torch.nn.Module, batch: dict) -> tuple[dict, dict]:
        """The objective's (weighted loss terms, metrics) for one batch (on the trained module or its DDP wrapper)."""
        return self.objective.loss(net, batch)

    # --- shared machinery -----------------------------------------------------------------------

    def _resume(self) -> None:
        path = checkpoint.latest_checkpoint(self.run_dir)
        if path is None:
            log.info("no checkpoint in %s: starting from scratch", self.run_dir)
            return
        ckpt = checkpoint.load_checkpoint(path)
        # Compared as dataclasses: a field added to ModelConfig since the checkpoint takes its default.
        if from_dict(ModelConfig, ckpt["config"]["model"]) != self.config.model:
            raise checkpoint.CheckpointError(f"{path}: model config differs from the one asked for; use a new run_dir")
        self.model.load_state_dict(ckpt["model"])
        self.objective.restore(ckpt, self.run_dir)
        self.optimisation.load_state_dict(ckpt)
        self.generator.set_state(ckpt["generator"][self.rank] if self.rank < len(ckpt["generator"]) else ckpt["generator"][0])
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"])
        else:  # written before v0.1.0 saved it: training goes on, only not bit-for-bit as if uninterrupted
            log.warning("%s has no global RNG state: resuming without it", path)
        log.info("resumed from %s at step %d (%.2f CPU-hours)", path, self.step, self.cpu_seconds / 3600)

    def _gather_generator_states(self) -> list[torch.Tensor]:
        state = self.generator.get_state()
        if self.world == 1:
            return [state]
        states = [torch.empty_like(state) for _ in range(self.world)]
        torch.distributed.all_gather(states, state)
        return states

    def save(self) -> None:
        states = self._gather_generator_states()
        if self.rank != 0:
            return
        state: checkpoint.Checkpoint = {
            "config": to_dict(self.config),
            "speakers": self.model.speaker_names,
            "speaker_info": self.model.speaker_info,
            "model": self.model.state_dict(),  # the unwrapped module, never the DDP wrapper
            **self.optimisation.state_dict(),  # optimizer, scheduler, step, cpu_seconds
            "generator": states,
            "torch_rng": torch.get_rng_state(),  # k-means init, dead-code restarts and jitter draw from it
            **self.objective.state(),
        }
        checkpoint.save_checkpoint(self.run_dir / f"checkpoint-{self.step}.pt", state)
        checkpoint.prune_checkpoints(self.run_dir, self.config.train.keep_checkpoints)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def train_step(self, batch: dict) -> tuple[dict, dict]:
        self.model.eval()  # frozen parts (if any) stay in eval mode: no EMA codebook updates, no jitter
        self.objective.trained.train()
        for part in self.objective.frozen:  # e.g. an EMA codebook inside the trained module that must not move
            part.eval()
        net = self.ddp or self.objective.trained
        if self.compiled is not None:  # (a compiled module has no truth value)
            net = self.compiled
        with self.optimisation.autocast():
            losses, metrics = self.compute(net, self._to_device(batch))
        metrics.update(self.optimisation.update(losses))
        return losses, metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        totals: dict[str, float] = {}
        batches = self.valid_set.fixed_batches(self.config.data.batch_size, self.config.train.val_batches)
        for batch in batches:
            with self.optimisation.autocast():
                losses, metrics = self.compute(self.objective.trained, self._to_device(batch))
            for k, v in {**losses, **metrics}.items():
                totals[k] = totals.get(k, 0.0) + float(v) / len(batches)
        return totals

    @torch.no_grad()
    def evaluate_generation(self) -> dict[str, float]:
        """Decode the first seconds of a few held-out utterances and score them against the originals."""
        from vqspeech.eval import metrics as M

        self.model.eval()
        n = int(self.config.train.eval_seconds * self.config.model.sample_rate)
        scores: list[dict[str, float]] = []
        gen = torch.Generator().manual_seed(1234)
        for row in self.valid_rows[:: max(1, len(self.valid_rows) // self.config.train.eval_utterances)][: self.config.train.eval_utterances]:
            wav = audio.load(row.path, self.config.model.sample_rate, normalise_level=False)[:n]
            encoded = self.model.encode(wav)
            # A table model renders its own speaker's row; a vector model the voice the encoding carries.
            speaker = row.speaker if self.model.config.voice == "table" else None
            decoded = self.model.decode(encoded, speaker, generator=gen, decoder=self.objective.eval_decoder)
            scores.append(M.speech_quality(wav, decoded))
            if self.writer and len(scores) == 1:
                self.writer.add_audio("eval/decoded", torch.from_numpy(decoded)[None], self.step, self.config.model.sample_rate)
                self.writer.add_audio("eval/original", torch.from_numpy(wav)[None], self.step, self.config.model.sample_rate)
        return {k: float(np.nanmean([s[k] for s in scores])) for k in scores[0]}

    def _log_csv(self, name: str, values: dict[str, float]) -> None:
        append_row(self.run_dir / f"{name}.csv", self.step, self.cpu_seconds, values)

    def fit(self) -> None:
        t = self.config.train
        bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", disable=self.rank != 0, dynamic_ncols=True)
        last: dict[str, torch.Tensor] = {}

        def train_step() -> None:
            losses, metrics = self.train_step(self.train_set.batch(self.config.data.batch_size, self.generator))
            last.clear()
            last.update({**losses, **metrics})
            bar.update(1)

        def log_train() -> None:
            values = {k: float(distributed.mean(v.detach())) for k, v in last.items()}
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k in ("recon/ce", "vq/perplexity")})
            if self.writer:
                for k, v in values.items():
                    self.writer.add_scalar(k, v, self.step)
                self.writer.add_scalar("train/lr", self.optimisation.scheduler.get_last_lr()[0], self.step)
                self.writer.add_scalar("train/cpu_hours", self.cpu_seconds / 3600, self.step)

        def held_out(kind: str, label: str, values: dict[str, float]) -> None:
            """`values` logged as `label`, and written to KIND.csv and TensorBoard's KIND/ scalars."""
            log.info("step %d %s %s", self.step, label, {k: round(v, 4) for k, v in values.items()})
            self._log_csv(kind, values)
            for k, v in values.items():
                self.writer.add_scalar(f"{kind}/{k}", v, self.step)

        every = [Every(t.log_every, log_train)]
        if self.rank == 0 and self.valid_set is not None:
            every.append(Every(t.val_every, lambda: held_out("valid", "valid", self.validate())))
        if self.rank == 0 and t.eval_every and self.valid_rows:
            every.append(Every(t.eval_every, lambda: held_out("eval", "held-out speech", self.evaluate_generation())))
        every.append(Every(t.checkpoint_every, self.save, at_end=True))
        fit(self.optimisation, t.steps, train_step, every, processes=self.world)
        bar.close()
        if self.writer:
            self.writer.close()
        self.ddp = self.compiled = None  # DDP's reducer holds the process group: release it before the group goes
        distributed.cleanup()


def train(config: Config, resume: bool = False) -> Path:
    trainer = Trainer(config, resume)
    trainer.fit()
    return trainer.run_dir
