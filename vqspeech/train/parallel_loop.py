"""Training the parallel decoder on a frozen VQ-VAE: codes' conditioning features + pitch -> waveform,
with a multi-resolution STFT loss. An Objective for the one training loop (loop.Trainer): only the model it
builds and its loss differ from the VQ-VAE's."""

from __future__ import annotations

import logging

import torch
from torch.nn import functional as F

from vqspeech.config import from_dict, ModelConfig
from vqspeech.models.parallel import stft_loss
from vqspeech.models.speaker_adversary import CodeSpeakerAdversary
from vqspeech.models.speaker_classifier import train_speaker_classifier
from vqspeech.models.vqvae import VQSpeech
from vqspeech import checkpoint
from vqspeech.train import distributed
from vqspeech.train.loop import Objective, Trainer, measure_speakers

log = logging.getLogger(__name__)


CODES = ("encoder.", "quantizer.")  # the parameters (and EMA buffers) that decide the codes


def _trains(name: str, joint: bool, codebook_by_gradient: bool, freeze_codes: bool = False) -> bool:
    """Whether the parameter `name` of a VQSpeech trains in a parallel-decoder run."""
    if name.startswith("parallel."):
        return True
    if not joint or name.startswith("decoder.") or (freeze_codes and name.startswith(CODES)):
        return False  # the frozen VQ-VAE (or its codes, train.freeze_codes); the WaveNet is never trained here
    if name.startswith("quantizer."):
        return codebook_by_gradient  # an EMA codebook follows its assignments, with no gradient
    return True  # joint: the codes' side (encoder, conditioning network, mel head, speaker table)


def conversion_voices(batch_size: int, mixup: float = 0.0, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which voices the voice loss converts a batch's crops to -> (first [B], second [B] crop indices, mix [B, 1]):
    crop i gets the voice (1 - mix) * voice[first] + mix * voice[second], where first = i - 1, second = i - 2, and
    mix ~ U(0, 1) for a share `mixup` of the crops (a virtual speaker between two real ones), else 0."""
    index = torch.arange(batch_size)
    if mixup <= 0:  # no draws: without mixup the run's random stream stays what it was before the option existed
        return torch.roll(index, 1), torch.roll(index, 2), torch.zeros(batch_size, 1)
    mix = torch.rand(batch_size, 1, generator=generator) * (torch.rand(batch_size, 1, generator=generator) < mixup)
    return torch.roll(index, 1), torch.roll(index, 2), mix


def init_voice_projection(model: VQSpeech, base_speakers: list[str], rows: torch.Tensor, ridge: float = 0.1) -> None:
    """Start a transplanted voice projection where the base's table was: the linear map (ridge regression, in its
    dual form since speakers are few) from the base speakers' mean d-vectors to their table rows [S, D]. Speakers
    of the base absent from this run are skipped; with fewer than two left, the projection keeps its init."""
    names = model.speaker_names
    keep = [i for i, n in enumerate(base_speakers) if n in names]
    if len(keep) < 2:
        log.warning("voice projection: %d of the base's speakers in this manifest; not initialised from its table", len(keep))
        return
    x = model.speaker_dvectors[[names.index(base_speakers[i]) for i in keep]]
    y = rows[keep].to(x.dtype)
    cm, rm = x.mean(0), y.mean(0)
    xc, yc = x - cm, y - rm
    weight = xc.T @ torch.linalg.solve(xc @ xc.T + ridge * torch.eye(len(xc)), yc)  # [256, D]
    with torch.no_grad():
        model.voice_projection.weight.copy_(weight.T)
        model.voice_projection.bias.copy_(rm - cm @ weight)


class ParallelObjective(Objective):
    """The parallel decoder on a base model (frozen, or with train.joint its codes' side too), by a multi-resolution
    STFT loss, with the optional conversion terms (a speaker judge's, the voice loss) and the code adversary."""

    eval_decoder = "parallel"

    def build_model(self, speakers: list[str]) -> VQSpeech:
        path = self.config.train.base_model
        if not path:
            raise ValueError("train.base_model: give the trained VQ-VAE checkpoint the parallel decoder learns on")
        base = checkpoint.load_checkpoint(path)
        model_config = from_dict(ModelConfig, base["config"]["model"])
        # A table-voice base given to a vector-voice run: its voice table is replaced by a projection of the
        # utterances' d-vectors, over the (new) speakers of this manifest; everything else carries over.
        self.transplant = model_config.voice == "table" and self.config.model.voice == "vector"
        if self.transplant and not self.config.train.joint:
            raise ValueError("model.voice=vector on a table-voice base trains the codes' side anew: it needs train.joint")
        # A vector-voice base given a manifest of other speakers (more of them, say): its voices come from each
        # utterance's d-vector, so only what is measured per training speaker (mean d-vectors, pitch ranges) is
        # measured anew on this manifest. A table-voice base keeps its speakers: its table rows are its voices.
        self.reseat = model_config.voice == "vector" and base["speakers"] != speakers
        if not self.transplant and not self.reseat and base["speakers"] != speakers:
            raise ValueError(f"{path}: its speakers {base['speakers']} are not this manifest's training speakers {speakers}")
        # The VQ-VAE's training cost, carried into every checkpoint (and shipped model) of this run. A base that
        # already has a parallel decoder starts this one from it (fine-tuning, e.g. with a new loss or joint):
        # its VQ-VAE's cost stays the VQ-VAE's, and its decoder's cost adds to this run's.
        self.base_training, self.init_training = checkpoint.costs_before(base, path)
        model_config.parallel_decoder = True
        model_config.parallel = self.config.model.parallel  # the one part of the model this run decides
        state = {k: v.float() for k, v in base["model"].items()}  # a float16 export is a base too
        new_parts = ("parallel.",)
        if self.transplant:
            model_config.voice, model_config.n_speakers = "vector", len(speakers)
            self.base_rows = (base["speakers"], state.pop("speaker_embedding.weight"))
            state.pop("speaker_lf0")  # measured anew on this manifest's speakers (prepare)
            new_parts += ("voice_projection.", "speaker_dvectors", "speaker_lf0")
        if self.reseat:
            model_config.n_speakers = len(speakers)
            for name in ("speaker_dvectors", "speaker_lf0"):
                state.pop(name)
            new_parts += ("speaker_dvectors", "speaker_lf0")
        self.config.model = model_config
        model = VQSpeech(model_config, speakers)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Explicit check instead of silent strict=False: only the new parts may be missing (none of the decoder
        # when the base has one of the same shape; a different shape fails in load_state_dict).
        if unexpected or any(not k.startswith(new_parts) for k in missing):
            raise checkpoint.CheckpointError(f"{path}: does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        joint = self.config.train.joint
        if joint and distributed.world_size() > 1:
            raise ValueError("train.joint runs in one process (its loss calls the model's parts directly, past DDP)")
        if self.config.train.code_adversary_weight > 0 and (not joint or self.config.train.freeze_codes):
            raise ValueError("train.code_adversary_weight pushes the encoder: it needs train.joint, without train.freeze_codes")
        if self.config.train.freeze_codes and not joint:
            raise ValueError("train.freeze_codes keeps the codes of a joint run: it needs train.joint")
        if self.config.train.voice_loss_weight > 0 and model_config.voice != "vector":
            raise ValueError("train.voice_loss_weight converts to other crops' d-vectors: it needs model.voice=vector")
        if not 0 <= self.config.train.voice_mixup <= 1:
            raise ValueError(f"train.voice_mixup: {self.config.train.voice_mixup} is a share, not in [0, 1]")
        if self.config.train.voice_mixup > 0 and self.config.train.voice_loss_weight <= 0:
            raise ValueError("train.voice_mixup mixes the voice loss's targets: it needs train.voice_loss_weight > 0")
        if self.config.train.voice_profile_weight > 0 and self.config.train.voice_loss_weight <= 0:
            raise ValueError("train.voice_profile_weight weighs a term of the voice loss: it needs train.voice_loss_weight > 0")
        codebook_by_gradient = model_config.quantizer.codebook_by_gradient
        for name, p in model.named_parameters():
            p.requires_grad = _trains(name, joint, codebook_by_gradient, self.config.train.freeze_codes)
        model.eval()  # frozen parts stay in eval mode (train_step switches the trained module to training mode)
        self.stft_loss = stft_loss()
        log.info("parallel decoder on %s %s (step %s): %.2f M trainable parameters", "jointly trained codes of" if joint else "frozen",
                 path, base["step"], sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
        self.model = model
        return model

    def state(self) -> dict:
        state = {"base_training": self.base_training, "init_training": self.init_training}
        if self.adversary is not None:
            state["code_adversary"] = self.adversary.state_dict()
        return state

    def restore(self, ckpt: dict, run_dir) -> None:
        # With or without an adversary, a run resumes as it started: the optimizer's state must line up.
        if (self.adversary is not None) != ("code_adversary" in ckpt):
            has = "has a" if "code_adversary" in ckpt else "has no"
            raise checkpoint.CheckpointError(f"{run_dir}: its checkpoint at step {ckpt['step']} {has} code adversary "
                                             "(train.code_adversary_weight): resume with the config the run started with")
        if self.adversary is not None:
            self.adversary.load_state_dict(ckpt["code_adversary"])

    def prepare(self, train_set, valid_set) -> None:
        # The speakers' pitch ranges come with the frozen model, unless its voices were transplanted or its speakers
        # changed. The conversion loss's judge is trained here, deterministically, so a resumed run rebuilds the same one.
        if self.transplant or self.reseat:
            measure_speakers(self.model, train_set)
        if self.transplant:
            init_voice_projection(self.model, *self.base_rows)
        self.speaker_classifier = None
        t = self.config.train
        if t.speaker_loss_weight > 0:
            self.speaker_classifier = train_speaker_classifier(train_set, valid_set, self.config.model.n_speakers,
                                                               t.speaker_classifier_steps, seed=t.seed)
        # The code adversary trains alongside the model, in the same optimizer.
        self.adversary = None
        if t.code_adversary_weight > 0:
            self.adversary = CodeSpeakerAdversary(self.config.model.latent_dim, self.config.model.n_speakers).to(self.model.device)
        # Joint: the whole model (the frozen WaveNet's parameters get no gradient, so Adam leaves them be), and the
        # code adversary if there is one; else the parallel decoder alone.
        if not t.joint:
            self.trained = self.model.parallel
        elif self.adversary is not None:
            self.trained = torch.nn.ModuleDict({"model": self.model, "adversary": self.adversary})
        else:
            self.trained = self.model
        self.clipped = {"": self.model, **({"adversary_": self.adversary} if self.adversary is not None else {})}
        if t.freeze_codes:  # in eval mode the codebook's EMA statistics, and so the codes, stay as they are
            self.frozen = [self.model.encoder, self.model.quantizer]

    def voice_loss(self, quantized: torch.Tensor, pitch: torch.Tensor, batch: dict, decoder) -> tuple[dict, dict]:
        """Each crop's codes decoded in the previous crop's voice (d-vector and pitch range: mostly another speaker;
        with train.voice_mixup, some in a random mixture of two other crops' voices: conversion_voices)
        -> (losses, metrics): weight * mean (1 - cosine of resemblyzer's embedding of it to the d-vector given), and
        with train.voice_profile_weight, weight * L1 of its long-term spectrum to the other crop's."""
        from vqspeech import features, speaker_encoder

        model, t = self.model, self.config.train
        first, second, mix = (x.to(quantized.device) for x in conversion_voices(quantized.shape[0], t.voice_mixup))

        def blend(x: torch.Tensor) -> torch.Tensor:  # per-crop x [B, ...] -> the targets' [B, ...]
            m = mix.view(-1, *[1] * (x.dim() - 1))
            return (1 - m) * x[first] + m * x[second]

        target = F.normalize(blend(batch["dvector"]), dim=-1)
        lf0 = blend(batch["lf0"])
        voice = model.dvector_voice(target)
        cond = model.condition(quantized, voice, pitch)
        out = decoder(cond.float(), model.f0(pitch, lf0), voice=voice).float()
        cos = (speaker_encoder.embed_batch(out) * target).sum(-1)
        losses = {"convert/dvector": t.voice_loss_weight * (1 - cos).mean()}
        metrics = {"convert/dvector_cos": cos.detach().mean()}
        if t.voice_profile_weight > 0:
            c = model.config
            profile = features.spectral_profile(out, c.hop, c.sample_rate, c.n_mels)
            wanted = blend(features.spectral_profile(batch["wav"], c.hop, c.sample_rate, c.n_mels))
            gap = (profile - wanted).abs().mean()
            losses["convert/profile"] = t.voice_profile_weight * gap
            metrics["convert/profile_gap"] = gap.detach()
        return losses, metrics

    def loss(self, net: torch.nn.Module, batch: dict) -> tuple[dict, dict]:
        model, joint = self.model, self.config.train.joint
        wav, speaker, pitch = batch["wav"], batch["speaker"], batch["pitch"]
        with torch.no_grad():
            f0 = model.f0(pitch, batch["lf0"])
        dvector = batch.get("dvector")
        if joint:  # codes trained through this loss too (plus their own VQ and mel terms)
            vq, voice, cond, losses, metrics = model.code_side(wav, speaker, pitch, dvector)
            if self.config.train.freeze_codes:  # the VQ terms would only push parameters that do not train
                losses = {k: v for k, v in losses.items() if not k.startswith("vq/")}
            decoder = model.parallel
        else:
            with torch.no_grad():  # the frozen VQ-VAE (in eval mode: see Trainer.train_step)
                vq = model.quantizer(model.encoder(wav[:, None]))
                voice = model.training_voice(speaker, dvector)
                cond = model.condition(vq.quantized, voice, pitch)
            losses, metrics, decoder = {}, {}, net
        out = decoder(cond.float(), f0, voice=voice)  # the voice again for a decoder with parallel.voice_film
        losses = {"recon/mrstft": self.stft_loss(out[:, None].float(), wav[:, None]), **losses}
        if self.speaker_classifier is not None:
            # Each crop decoded in another training speaker's voice and pitch range, as `convert` does. When
            # joint, this also presses the codes to leave the voice to the speaker table.
            n = model.config.n_speakers
            target = (speaker + torch.randint(1, n, speaker.shape, device=speaker.device)) % n
            with torch.set_grad_enabled(joint and torch.is_grad_enabled()):
                voice_t = model.speaker_voice(target)
                cond_t = model.condition(vq.quantized, voice_t, pitch)
            f0_t = model.f0(pitch, model.speaker_lf0[target])
            logits = self.speaker_classifier(decoder(cond_t.float(), f0_t, voice=voice_t).float())
            losses["convert/speaker"] = self.config.train.speaker_loss_weight * F.cross_entropy(logits, target)
            metrics["convert/target_accuracy"] = (logits.argmax(-1) == target).float().mean()
        if self.config.train.voice_loss_weight > 0:
            voice_losses, voice_metrics = self.voice_loss(vq.quantized, pitch, batch, decoder)
            losses.update(voice_losses)
            metrics.update(voice_metrics)
        if self.adversary is not None:
            # Unweighted for the adversary itself; the weight scales only the reversed gradient into the encoder.
            logits = self.adversary(vq.quantized, self.config.train.code_adversary_weight)
            losses["adversary/speaker"] = F.cross_entropy(logits, speaker)
            metrics["adversary/accuracy"] = (logits.argmax(-1) == speaker).float().mean()  # the codes' leak; chance 1/n
        return losses, metrics


def train_parallel(config, resume: bool = False):
    """Train (or fine-tune) the parallel decoder as `config` says; -> the run folder."""
    trainer = Trainer(config, resume, ParallelObjective)
    trainer.fit()
    return trainer.run_dir
