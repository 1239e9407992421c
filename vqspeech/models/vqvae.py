"""VQSpeech: encoder -> vector quantizer -> conditioning network -> decoders, conditioned on a voice.

The voice (config.voice) is either a row of a learned table, one per training speaker ("table", models up to
v3), or a speaker vector computed from the utterance itself ("vector": a speaker-verification d-vector through
a learned linear map), which the codec carries in the file so that a voice the model never heard stays itself.

Public face:
    model.encode(wav) -> Encoded           (codes, pitch symbols, log-F0 statistics, the voice vector)
    model.decode(encoded, speaker) -> wav  (parallel or autoregressive)
    model(batch) -> losses, metrics        (training)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vqspeech import audio, features
from vqspeech.config import QUANTIZER_TRAINING_RULE, ModelConfig
from vqspeech.models import lpc as linear_prediction
from vqspeech.models.encoder import Encoder
from vqspeech.models.encoding import VOICE_SECONDS, Encoded, encode_stream
from vqspeech.models.parallel import ParallelDecoder
from vqspeech.models.quantizer import VectorQuantizer
from vqspeech.models.two_rate import TwoRateQuantizer
from vqspeech.models.wavenet import WaveNet
from vqspeech.precision import inference_autocast


class VQSpeech(nn.Module):
    def __init__(self, config: ModelConfig, speakers: list[str] | None = None):
        super().__init__()
        self.config = config
        self.speaker_names = list(speakers or [f"spk{i}" for i in range(config.n_speakers)])
        self.speaker_info: dict[str, dict] = {}  # name -> {gender, accent, region}; filled by load_model
        # What lies beside the model's file, set by checkpoint.load: the voice bank (speaker_encoder.VoiceBank: the
        # training speakers' resemblyzer centroids) and the path of the prior over its codes (read when needed).
        self.voice_bank = None
        self.prior_path = None
        if len(self.speaker_names) != config.n_speakers:
            raise ValueError(f"{len(self.speaker_names)} speaker names for n_speakers={config.n_speakers}")
        c = config
        self.encoder = Encoder(c.encoder, c.latent_dim)
        self.quantizer = (TwoRateQuantizer(c.quantizer, c.latent_dim, c.pitch_frames) if c.quantizer.top_codebook_size
                          else VectorQuantizer(c.quantizer, c.latent_dim))
        if c.voice == "table":
            self.speaker_embedding = nn.Embedding(c.n_speakers, c.speaker_dim)
        elif c.voice == "vector":
            from vqspeech import speaker_encoder

            # The training speakers' mean d-vectors (unit rows), measured on the training data: converting to a
            # training speaker maps its row through the same layer as an unseen voice's d-vector.
            self.voice_projection = nn.Linear(speaker_encoder.EMBEDDING_DIM, c.speaker_dim)
            self.register_buffer("speaker_dvectors", torch.zeros(c.n_speakers, speaker_encoder.EMBEDDING_DIM))
        else:
            raise ValueError(f"model.voice {c.voice!r}: choose table or vector")
        # Per-speaker log-F0 mean and std, filled from the training data: conversion renders the
        # normalised pitch in the target's range with them.
        self.register_buffer("speaker_lf0", torch.tensor([[float(np.log(150.0)), 0.2]] * c.n_speakers))
        cond_in = c.latent_dim + c.speaker_dim + (2 if c.pitch else 0)
        layers: list[nn.Module] = []
        for i in range(c.decoder.cond_layers):
            layers += [nn.Conv1d(cond_in if i == 0 else c.decoder.cond_channels, c.decoder.cond_channels, 3, padding=1), nn.ReLU()]
        self.cond_net = nn.Sequential(*layers) if layers else nn.Conv1d(cond_in, c.decoder.cond_channels, 1)
        self.mel_head = nn.Conv1d(c.decoder.cond_channels, c.n_mels, 1) if c.mel_weight > 0 else None
        for option in ("parallel_input", "lpc_order"):
            if getattr(c.decoder, option) and not c.parallel_decoder:
                raise ValueError(f"model.decoder.{option} reads the parallel decoder's rendering: it needs model.parallel_decoder")
        if c.decoder.pitch_lag and not (c.decoder.lpc_order and c.pitch):
            raise ValueError("model.decoder.pitch_lag feeds the LPC WaveNet its excitation a period back: it needs lpc_order and pitch")
        wavenet_inputs = (c.pitch_harmonics if c.pitch else 0) + (1 if c.decoder.parallel_input else 0)
        self.decoder = WaveNet(c.decoder, c.decoder.cond_channels, wavenet_inputs, 2**c.mu_law_bits, c.hop)
        self.parallel = ParallelDecoder(c.parallel, c.decoder.cond_channels, c.hop, c.sample_rate, c.speaker_dim) if c.parallel_decoder else None

    # --- building blocks ------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the weights are. What inference makes itself (codes from numpy audio, indices, noise) goes there, and
        what it returns comes back to the CPU, so encode and decode work the same on a GPU (training's evaluation)."""
        return next(self.parameters()).device

    @property
    def default_decoder(self) -> str:
        """The parallel decoder when the model has one (far faster, and in our measurements better), else the WaveNet."""
        return "parallel" if self.parallel is not None else "autoregressive"

    def pad_length(self, n_samples: int) -> int:
        """Smallest length >= n_samples that is a whole number of pitch frames."""
        unit = self.config.pitch_hop
        return max(unit, -(-n_samples // unit) * unit)

    def speaker_index(self, speaker: str | int) -> int:
        if isinstance(speaker, int):
            if not 0 <= speaker < self.config.n_speakers:
                raise ValueError(f"speaker index {speaker} out of range (0..{self.config.n_speakers - 1})")
            return speaker
        if speaker not in self.speaker_names:
            raise ValueError(f"unknown speaker {speaker!r}; this model has: {', '.join(self.speaker_names)}")
        return self.speaker_names.index(speaker)

    def speaker_voice(self, speaker: torch.Tensor) -> torch.Tensor:
        """Training speakers' voices: speaker [B] long -> [B, speaker_dim] (their table rows, or their mean
        d-vectors through the voice projection)."""
        if self.config.voice == "table":
            return self.speaker_embedding(speaker)
        return self.voice_projection(self.speaker_dvectors[speaker])

    def dvector_voice(self, dvector: torch.Tensor) -> torch.Tensor:
        """d-vectors [B, 256] (speaker_encoder.embed) -> voices [B, speaker_dim]; voice="vector" models only."""
        if self.config.voice != "vector":
            raise ValueError("this model reads its voices from a table of its training speakers, not from a speaker vector")
        return self.voice_projection(dvector.to(self.voice_projection.weight.dtype))

    @property
    def two_rate(self) -> bool:
        """Whether the codes come at two rates (top codes, one per pitch frame, and bottom codes: models/two_rate.py)."""
        return self.config.quantizer.top_codebook_size > 0

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder latents z [B, D, F] -> (codes [B, F], top codes [B, F // pitch_frames] or None at one rate)."""
        return self.quantizer.encode(z) if self.two_rate else (self.quantizer.encode(z), None)

    def dequantise(self, codes: torch.Tensor, top: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, F] (and top codes [B, F // pitch_frames], two rates) -> what the decoders read [B, D, F]."""
        if self.two_rate != (top is not None):
            raise ValueError("this model's codes come at two rates: give the top codes too" if self.two_rate else
                             "top codes given to a model whose codes come at one rate")
        return self.quantizer.lookup(codes, top) if self.two_rate else self.quantizer.lookup(codes)

    def condition(self, quantized: torch.Tensor, voice: torch.Tensor, pitch: torch.Tensor | None) -> torch.Tensor:
        """quantized [B, D, F], voice [B, speaker_dim], pitch [B, F // pitch_frames] long -> cond [B, C, F]."""
        B, _, n = quantized.shape
        parts = [quantized, voice.to(quantized.dtype)[:, :, None].expand(B, -1, n)]
        if self.config.pitch:
            z, voiced = features.dequantise_pitch(pitch, self.config.pitch_levels, self.config.pitch_z_range)
            parts.append(torch.stack([z, voiced], 1).repeat_interleave(self.config.pitch_frames, dim=-1))
        return self.cond_net(torch.cat(parts, 1))

    def f0(self, pitch: torch.Tensor | None, lf0: torch.Tensor) -> torch.Tensor | None:
        """pitch [B, P] symbols, lf0 [B, 2] (mean, std) -> F0 in Hz [B, P * pitch_hop] (0 unvoiced), or None."""
        if not self.config.pitch:
            return None
        c = self.config
        z, voiced = features.dequantise_pitch(pitch, c.pitch_levels, c.pitch_z_range)
        return features.f0_at_sample_rate(z, voiced, lf0[:, 0], lf0[:, 1], c.pitch_hop)

    def excitation(self, pitch: torch.Tensor | None, lf0: torch.Tensor) -> torch.Tensor | None:
        """pitch [B, P] symbols, lf0 [B, 2] (mean, std) -> [B, harmonics, P * pitch_hop] or None."""
        f0 = self.f0(pitch, lf0)
        return None if f0 is None else features.excitation(f0, self.config.pitch_harmonics, self.config.sample_rate)

    @torch.no_grad()  # the rendering is an input of the WaveNet: no gradient reaches the parallel decoder
    def rendering(self, cond: torch.Tensor, pitch: torch.Tensor | None, lf0: torch.Tensor, voice: torch.Tensor,
                  generator: torch.Generator | None = None, parallel: nn.Module | None = None) -> torch.Tensor | None:
        """What the WaveNet reads of the parallel decoder (decoder.parallel_input, decoder.lpc_order): its rendering
        of cond [B, C, F] in voice [B, speaker_dim] (by `parallel`, one adapted to a voice, where given),
        pre-emphasised as the WaveNet's signal is -> [B, F * hop], or None when the WaveNet reads nothing of it."""
        c = self.config
        if not (c.decoder.parallel_input or c.decoder.lpc_order):
            return None
        # drawn on the CPU (where generators live) so that a seed gives the same rendering on any device
        noise = torch.randn(cond.shape[0], cond.shape[-1] * c.hop, generator=generator).to(cond.device)
        rendered = (self.parallel if parallel is None else parallel)(cond.float(), self.f0(pitch, lf0), noise, voice=voice).clamp(-1, 1)
        return audio.preemphasis(rendered, c.preemphasis)

    def wavenet_inputs(self, pitch: torch.Tensor | None, lf0: torch.Tensor, rendering: torch.Tensor | None) -> torch.Tensor | None:
        """The WaveNet's sample-rate inputs: pitch [B, P] symbols, lf0 [B, 2], rendering [B, T] (`rendering`)
        -> [B, H, T] (the pitch excitation's harmonics, then with decoder.parallel_input the rendering mu-law
        companded: the WaveNet's own output domain), or None."""
        c = self.config
        parts = [] if pitch is None or not c.pitch else [self.excitation(pitch, lf0)]
        if c.decoder.parallel_input:
            parts.append(audio.mu_law_compress(rendering, c.mu_law_bits)[:, None])
        return torch.cat(parts, 1) if parts else None

    def lpc_inputs(self, rendering: torch.Tensor | None, pitch: torch.Tensor | None,
                   lf0: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The LPC WaveNet's frame inputs (models/lpc.py): predictor coefficients from `rendering` [B, T]
        -> [B, T // hop, order], and with decoder.pitch_lag the pitch lags [B, T] from pitch [B, P], lf0 [B, 2];
        None for what the WaveNet does not read."""
        c = self.config
        if not c.decoder.lpc_order:
            return None, None
        coeffs = linear_prediction.coefficients(rendering, c.hop, c.decoder.lpc_order, c.sample_rate)
        lags = linear_prediction.pitch_lags(self.f0(pitch, lf0), c.sample_rate) if c.decoder.pitch_lag else None
        return coeffs, lags

    def jitter(self, quantized: torch.Tensor) -> torch.Tensor:
        """Replace each frame by a neighbour with probability `jitter` (half each side)."""
        p = self.config.jitter
        B, _, n = quantized.shape
        dev = quantized.device
        shift = torch.multinomial(torch.tensor([p / 2, 1 - p, p / 2], device=dev), B * n, replacement=True).view(B, n) - 1
        idx = (torch.arange(n, device=dev)[None] + shift).clamp(0, n - 1)
        return quantized.gather(2, idx[:, None].expand_as(quantized))

    # --- training -------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor, speaker: torch.Tensor, pitch: torch.Tensor | None, lf0: torch.Tensor,
                dvector: torch.Tensor | None = None):
        """wav [B, T] float (T a multiple of pitch_hop), speaker [B], pitch [B, T // pitch_hop], lf0 [B, 2],
        dvector [B, 256] (voice="vector") -> (losses: dict of weighted scalar terms, metrics: dict of scalars)."""
        if self.config.decoder.lpc_order:
            raise ValueError("the LPC WaveNet trains on a finished model's frozen codes: vqspeech train-wavenet")
        vq, voice, cond, code_losses, metrics = self.code_side(wav, speaker, pitch, dvector)
        target, prev = self.teacher_forcing(wav)
        logits = self.decoder(prev, cond, self.wavenet_inputs(pitch, lf0, self.rendering(cond, pitch, lf0, voice)))
        return {"recon/ce": F.cross_entropy(logits.float(), target), **code_losses}, metrics

    def teacher_forcing(self, wav: torch.Tensor, coeffs: torch.Tensor | None = None,
                        lags: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [B, T] -> (target [B, T], prev [B, T]): the WaveNet's mu-law classes of the pre-emphasised signal, and
        the same shifted by one sample (mid-scale first), what it is fed to predict them. With the LPC WaveNet's
        coefficients [B, T // hop, P] and lags (`lpc_inputs`): the excitation's classes and inputs [B, 3 or 4, T]."""
        c = self.config
        if coeffs is not None:
            return linear_prediction.teacher_forcing(audio.preemphasis(wav, c.preemphasis), coeffs, c.hop, c.mu_law_bits, lags)
        target = audio.mu_law_encode(audio.preemphasis(wav, c.preemphasis), c.mu_law_bits)
        return target, F.pad(target[:, :-1], (1, 0), value=2 ** (c.mu_law_bits - 1))

    def training_voice(self, speaker: torch.Tensor, dvector: torch.Tensor | None) -> torch.Tensor:
        """The voice a training crop is decoded in: its speaker's table row, or its utterance's d-vector mapped."""
        if self.config.voice == "table":
            return self.speaker_embedding(speaker)
        if dvector is None:
            raise ValueError("a voice=vector model trains on batches with d-vectors")
        return self.dvector_voice(dvector)

    def code_side(self, wav: torch.Tensor, speaker: torch.Tensor, pitch: torch.Tensor | None,
                  dvector: torch.Tensor | None = None):
        """The training pass up to the decoders' conditioning, shared by the WaveNet's objective (forward) and
        the parallel decoder's joint training: wav [B, T], speaker [B], pitch [B, T // pitch_hop], dvector
        [B, 256] or None -> (QuantizerOutput, the voice [B, speaker_dim] cond was made with, cond [B, C, F], losses
        (VQ terms, auxiliary mel), metrics)."""
        c = self.config
        vq = self.quantizer(self.encoder(wav[:, None]))
        quantized = self.jitter(vq.quantized) if self.training and c.jitter > 0 else vq.quantized
        voice = self.training_voice(speaker, dvector)
        cond = self.condition(quantized, voice, pitch)
        losses = dict(vq.losses)
        if self.mel_head is not None:
            mel = features.log_mel(wav, c.hop, c.sample_rate, c.n_mels)
            losses["aux/mel"] = c.mel_weight * F.l1_loss(self.mel_head(cond).float(), mel)
        metrics = {"vq/perplexity": vq.perplexity.detach(), "vq/usage": vq.usage.detach()}
        if vq.top_perplexity is not None:
            metrics["vq/top_perplexity"] = vq.top_perplexity.detach()
        return vq, voice, cond, losses, metrics

    # --- inference ------------------------------------------------------------------------------

    def encode(self, wav: np.ndarray | torch.Tensor, latent_map=None) -> Encoded:
        """One waveform [T] at the model's sample rate -> Encoded (codes [F], pitch [F // pitch_frames], log-F0
        statistics, the voice vector): models/encoding.encode_stream, the codec's own path, on it as one block.
        latent_map: see encode_stream (conversion's kNN matching of the latents to a target's)."""
        wav = torch.as_tensor(wav, dtype=torch.float32).flatten().numpy()
        return encode_stream(self, [wav], wav.shape[0], latent_map=latent_map)

    @torch.no_grad()
    def voice_of(self, wav: np.ndarray) -> tuple[torch.Tensor | None, np.ndarray | None]:
        """A recording [T] -> (its voice vector [speaker_dim] quantised as a file carries it, its d-vector [256]);
        (None, None) for a table-voice model, whose voices are its training speakers only."""
        if self.config.voice != "vector":
            return None, None
        from vqspeech import speaker_encoder
        from vqspeech.codec.bitstream import quantise_voice

        d = speaker_encoder.embed(wav[: int(VOICE_SECONDS * self.config.sample_rate)])
        return quantise_voice(self.dvector_voice(torch.from_numpy(d)[None].to(self.device))[0]), d

    def nearest_voice(self, dvector: np.ndarray) -> tuple[str, float]:
        """The training speaker whose mean d-vector is nearest (cosine) to `dvector` [256], and the cosine."""
        sims = self.speaker_dvectors.cpu() @ torch.as_tensor(dvector, dtype=self.speaker_dvectors.dtype)
        i = int(sims.argmax())
        return self.speaker_names[i], float(sims[i])

    def speaker_pitch(self, speaker: str | int) -> tuple[float, float]:
        mean, std = self.speaker_lf0[self.speaker_index(speaker)].tolist()
        return mean, std

    @torch.no_grad()
    def decode(self, encoded: Encoded, speaker: str | int | None, lf0: tuple[float, float] | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None, decoder: str | None = None,
               speaker_vector: torch.Tensor | None = None, parallel: nn.Module | None = None) -> np.ndarray:
        """Encoded + speaker (name or index) -> waveform float32 [n_samples]; `parallel`: a parallel decoder to render
        with instead of the model's own (one adapted to a voice: conversion.adapt_decoder).

        The voice, first that applies: `speaker_vector` [speaker_dim] (a voice from elsewhere, e.g. references of
        an unseen speaker), the training speaker `speaker`, the voice vector the file carries (encoded.voice).
        lf0: the (mean, std) of log-F0 to render the pitch in; the utterance's own by default. For voice
        conversion pass the target speaker's (``speaker_pitch``). decoder: "autoregressive" (the WaveNet,
        sample by sample) or "parallel" (the fast decoder, if the model has one); None: `default_decoder`."""
        decoder = decoder or self.default_decoder
        lf0 = lf0 or (encoded.lf0_mean, encoded.lf0_std)
        dev = self.device
        if speaker_vector is not None:
            vector = torch.as_tensor(speaker_vector, dtype=torch.float32).reshape(1, -1).to(dev)
        elif speaker is not None:
            vector = self.speaker_voice(torch.tensor([self.speaker_index(speaker)], device=dev))
        elif encoded.voice is not None:
            vector = encoded.voice.float().reshape(1, -1).to(dev)
        else:
            raise ValueError("no voice to decode in: name a training speaker (this file carries no voice vector)")
        if vector.shape[1] != self.config.speaker_dim:
            raise ValueError(f"speaker vector of size {vector.shape[1]}; this model's voices have {self.config.speaker_dim}")
        pitch = None if encoded.pitch is None else encoded.pitch[None].to(dev)
        top = None if encoded.top is None else encoded.top[None].to(dev)
        lf0_t = torch.tensor([lf0], dtype=torch.float32, device=dev)
        quantized = self.dequantise(encoded.codes[None].to(dev), top)
        if decoder == "parallel":
            parallel = self.parallel if parallel is None else parallel
            if parallel is None:
                raise ValueError("this model has no parallel decoder; use the autoregressive one")
            noise = torch.randn(1, quantized.shape[-1] * self.config.hop, generator=generator).to(dev)
            with inference_autocast(dev):  # bfloat16 where native: the parallel decoder's products twice as fast
                cond = self.condition(quantized, vector, pitch)
                wav = parallel(cond.to(next(parallel.parameters()).dtype), self.f0(pitch, lf0_t), noise, voice=vector)
            return np.clip(wav[0].float().cpu().numpy(), -1.0, 1.0)[: encoded.n_samples]
        if decoder != "autoregressive":
            raise ValueError(f"unknown decoder {decoder!r}: choose autoregressive or parallel")
        cond = self.condition(quantized, vector, pitch)
        rendering = self.rendering(cond, pitch, lf0_t, vector, generator, parallel)
        coeffs, lags = self.lpc_inputs(rendering, pitch, lf0_t)
        classes = self.generate(cond, self.wavenet_inputs(pitch, lf0_t, rendering), temperature, generator, lpc=coeffs,
                                lags=lags)
        return self.to_waveform(classes, coeffs)[0, : encoded.n_samples]

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, excitation: torch.Tensor | None, temperature: float = 1.0,
                 generator: torch.Generator | None = None, method: str | None = None,
                 lpc: torch.Tensor | None = None, lags: torch.Tensor | None = None) -> torch.Tensor:
        """Cached autoregressive sampling. cond [B, C, F] -> classes [B, F * hop]; lpc [B, F, P] and lags [B, F * hop]:
        the LPC WaveNet's coefficients and pitch lags (`lpc_inputs`), then the classes are the excitation's
        (`to_waveform` makes the signal).

        method: "fast" (the compiled step loop of `fast_sampler`, the default when numba is installed) or
        "reference" (the same loop one PyTorch op at a time). Both sample by inverse CDF from one uniform
        per sample drawn from `generator`, so from the same generator state they give the same classes
        (up to float rounding at a CDF boundary, which is rare)."""
        # Imported here: numba's import and first compile are only paid by code that generates.
        from vqspeech.models import fast_sampler

        method = method or ("fast" if fast_sampler.available() else "reference")
        if method not in ("fast", "reference"):
            raise ValueError(f"unknown generation method {method!r} (fast, reference)")
        B, _, n_frames = cond.shape
        uniforms = fast_sampler.draw_uniforms(B, n_frames * self.config.hop, generator)
        start = 2 ** (self.config.mu_law_bits - 1)
        if method == "fast":
            return fast_sampler.generate(self.decoder, cond, excitation, uniforms, temperature, start, lpc=lpc, lags=lags)
        return self.decoder.sample_reference(cond, excitation, uniforms, temperature, start, lpc, lags)

    def to_waveform(self, classes: torch.Tensor, lpc: torch.Tensor | None = None) -> np.ndarray:
        """mu-law classes [B, T] (with the LPC WaveNet's coefficients [B, T // hop, P]: the excitation's) -> float32
        waveform [B, T] (de-emphasised)."""
        c = self.config
        if lpc is None:
            y = audio.mu_law_decode(classes.cpu(), c.mu_law_bits).numpy()
        else:
            y = linear_prediction.synthesise(classes.cpu().numpy(), lpc.cpu().numpy(), c.hop, c.mu_law_bits)
        return np.clip(audio.deemphasis(y, c.preemphasis), -1.0, 1.0)


def model_fingerprint(model: VQSpeech) -> bytes:
    """8 bytes that name the code space of `model`: codes only mean something to the codebook that made them.

    sha256 over the config of the code space (JSON, sorted keys) and the encoder's and codebook's weights rounded to
    float16, so a float32 checkpoint and its float16 export share a fingerprint while retraining or a
    different architecture does not. The decoder is left out: a decoder fine-tuned on the same codes can
    still read them. The quantizer's EMA statistics are left out too: they do not change what a code means.
    """
    import hashlib
    import json
    from dataclasses import asdict

    c = asdict(model.config)
    code_space = {k: c[k] for k in ("sample_rate", "latent_dim", "encoder", "quantizer", "pitch", "pitch_levels",
                                    "pitch_frames", "pitch_z_range")}  # not the decoders' settings
    # The training rule of the codebook (QuantizerConfig.method and its settings, added after models had shipped) is
    # left out: inference takes the nearest code whichever rule trained it, and the weights below tell codebooks
    # apart; leaving it out keeps the fingerprints of every file made before it.
    for name in QUANTIZER_TRAINING_RULE:  # config.py, beside QuantizerConfig
        code_space["quantizer"].pop(name)
    # Settings added after models had shipped name a code space only when set: left out at their off value, they keep
    # the fingerprints of every file made before them.
    if not model.two_rate:
        code_space["quantizer"].pop("top_codebook_size")
    if not model.config.encoder.normalise_frames:
        code_space["encoder"].pop("normalise_frames")
    digest = hashlib.sha256(json.dumps(code_space, sort_keys=True).encode())
    tensors = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    tensors["quantizer.codebook"] = model.quantizer.codebook
    if model.two_rate:  # the top path and its codebook name the code space too
        tensors.update({f"quantizer.{k}": v for k, v in model.quantizer.state_dict().items()
                        if k.startswith(("down.", "up.")) or k == "top.codebook"})
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().to("cpu", torch.float16).contiguous().numpy().astype("<f2").tobytes())
    return digest.digest()[:8]
