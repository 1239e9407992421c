"""train-wavenet: the autoregressive WaveNet decoder trained alone, on the frozen codes, conditioning network, voice
and parallel decoder of a finished model (issue: the paper's decoder speaks).

Everything but `decoder.*` keeps the base model's weights, so the codes, their bitstream and the parallel decoder
are exactly the base's: the WaveNet can be swapped into a shipped model without touching anything else. With
model.decoder.parallel_input the WaveNet also reads the parallel decoder's rendering of the same codes (see
VQSpeech.wavenet_inputs): it learns what that rendering misses rather than speech from scratch.

The base model's WaveNet is the start where its shape fits this run's decoder config (the new input channel of
the parallel rendering starts at zero weight, so step 0 is the base's WaveNet exactly); otherwise the WaveNet
starts fresh. The base's training cost stays with it (base_costs); this run's is the WaveNet's.
"""

from __future__ import annotations

import logging

import torch
from torch.nn import functional as F

from vqspeech import checkpoint
from vqspeech.config import ModelConfig, from_dict
from vqspeech.models import lpc
from vqspeech.models.vqvae import VQSpeech
from vqspeech.train.loop import Objective, Trainer

log = logging.getLogger(__name__)


def wavenet_start(base_state: dict, model: VQSpeech) -> dict:
    """The base's `decoder.*` weights adapted to `model`'s WaveNet: {} when the shapes differ beyond the input
    channel that parallel_input adds or the pitch-lag stream of an LPC WaveNet (then the WaveNet starts from its
    init); what is new gets zero weight, so step 0 is the base's WaveNet."""
    own = {k: v for k, v in model.state_dict().items() if k.startswith("decoder.")}
    base = {k: v.float() for k, v in base_state.items() if k.startswith("decoder.")}
    if set(base) != set(own):
        return {}
    start = {}
    for k, v in base.items():
        want = own[k]
        if v.shape == want.shape:
            start[k] = v
        elif k == "decoder.excitation.weight" and v.shape[0] == want.shape[0] and v.shape[2:] == want.shape[2:] \
                and v.shape[1] < want.shape[1]:
            start[k] = torch.cat([v, torch.zeros(want.shape[0], want.shape[1] - v.shape[1], *want.shape[2:])], 1)
        elif k == "decoder.embed.weight" and v.shape[1] == want.shape[1] and lpc.N_STREAMS * model.decoder.n_classes \
                <= v.shape[0] < want.shape[0]:  # an LPC WaveNet given the pitch-lag stream: its rows start at zero
            start[k] = torch.cat([v, torch.zeros(want.shape[0] - v.shape[0], v.shape[1])])
        else:
            return {}
    return start


def base_costs(base: checkpoint.Checkpoint, path) -> dict:
    """What a train-wavenet checkpoint records of its base's training (see checkpoint.training_cost): the VQ-VAE's
    (base_training), the parallel decoder's (init_training, None without one), the WaveNet's earlier train-wavenet
    runs (wavenet_training; zero when the base's WaveNet came with its VQ-VAE, whose cost then holds it)."""
    vqvae, parallel = checkpoint.costs_before(base, path)
    return {"base_training": vqvae, "init_training": parallel,
            "wavenet_training": checkpoint.wavenet_training(base) or {"steps": 0, "cpu_seconds": 0.0}}


class WaveNetObjective(Objective):
    """The WaveNet alone on a finished model, everything else frozen, by its cross-entropy."""

    eval_decoder = "autoregressive"

    def build_model(self, speakers: list[str]) -> VQSpeech:
        path = self.config.train.base_model
        if not path:
            raise ValueError("train.base_model: give the model whose WaveNet this run trains (train-wavenet --base-model)")
        base = checkpoint.load_checkpoint(path)
        model_config = from_dict(ModelConfig, base["config"]["model"])
        if base["speakers"] != speakers:
            raise ValueError(f"{path}: its speakers {base['speakers']} are not this manifest's training speakers {speakers}")
        wants = [o for o in ("parallel_input", "lpc_order") if getattr(self.config.model.decoder, o)]
        if not model_config.parallel_decoder and wants:
            raise ValueError(f"{path}: has no parallel decoder, so its rendering cannot be the WaveNet's input "
                             f"(model.decoder.{wants[0]})")
        model_config.decoder = self.config.model.decoder  # the one part of the model this run decides
        self.config.model = model_config
        self.costs = base_costs(base, path)
        model = VQSpeech(model_config, speakers)
        state = {k: v.float() for k, v in base["model"].items() if not k.startswith("decoder.")}
        start = wavenet_start(base["model"], model)
        log.info("WaveNet %s", "from the base model's" if start else "from scratch (the base's has another shape)")
        missing, unexpected = model.load_state_dict({**state, **start}, strict=False)
        if unexpected or any(not k.startswith("decoder.") for k in missing):
            raise checkpoint.CheckpointError(f"{path}: does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("decoder.")
        model.eval()
        log.info("WaveNet on the frozen codes of %s: %.2f M trainable parameters", path,
                 sum(p.numel() for p in model.decoder.parameters()) / 1e6)
        self.model = model
        return model

    def prepare(self, train_set, valid_set) -> None:
        # The speakers' pitch ranges and d-vectors are the base model's, frozen with it.
        self.trained, self.clipped = self.model.decoder, {"": self.model.decoder}

    def state(self) -> dict:
        return dict(self.costs)

    def loss(self, net: torch.nn.Module, batch: dict) -> tuple[dict, dict]:
        model, c = self.model, self.model.config
        wav, pitch, lf0 = batch["wav"], batch["pitch"], batch["lf0"]
        with torch.no_grad():  # the frozen model up to the WaveNet's inputs
            vq = model.quantizer(model.encoder(wav[:, None]))
            voice = model.training_voice(batch["speaker"], batch.get("dvector"))
            cond = model.condition(vq.quantized, voice, pitch)
            rendering = model.rendering(cond, pitch, lf0, voice)
            inputs = model.wavenet_inputs(pitch, lf0, rendering)
            target, prev = model.teacher_forcing(wav, *model.lpc_inputs(rendering, pitch, lf0))
        noise = self.config.train.input_noise
        if noise > 0 and net.training:
            prev = (prev + torch.randn(prev.shape, device=prev.device) * noise).round().long().clamp(0, 2**c.mu_law_bits - 1)
        logits = net(prev, cond, inputs).float()
        ce = F.cross_entropy(logits, target)
        return {"recon/ce": ce}, {"recon/accuracy": (logits.argmax(1) == target).float().mean().detach()}


def train_wavenet(config, resume: bool = False):
    """Train the WaveNet of `config.train.base_model` as `config` says; -> the run folder."""
    trainer = Trainer(config, resume, WaveNetObjective)
    trainer.fit()
    return trainer.run_dir
