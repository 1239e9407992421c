"""Configuration dataclasses for the model and its training.

Every shape parameter is defined here once; everything else derives from it (the hop is the
product of the encoder strides, the pitch hop a multiple of the hop). A config is saved inside
each checkpoint as a plain dict (``asdict``) so that ``load_model(path)`` needs nothing but the file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass
class EncoderConfig:
    channels: int = 128
    strides: tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    kernel_size: int = 4
    residual_layers: int = 2
    # Local instance normalisation of the latents (after AdaIN-VC / VQVC's instance norm): each channel centred and
    # scaled by its mean and spread over this many frames around each frame, so that what stays constant over a
    # stretch of speech (the voice, the channel) cannot reach the codes. 0: off. Local, not per utterance, so that
    # chunked encoding stays exact.
    normalise_frames: int = 0


@dataclass
class QuantizerConfig:
    codebook_size: int = 512
    commitment: float = 0.25  # beta in van den Oord et al. 2017
    ema: bool = True  # codebook by exponential moving averages instead of the codebook loss
    decay: float = 0.99
    # A code whose EMA count (expected uses per batch) falls below this is restarted on an encoder output.
    dead_code_threshold: float = 0.05
    kmeans_init: bool = True  # on the first batch: without it, codes start far from the encoder outputs
    kmeans_iters: int = 10
    # How training assigns encoder outputs to codes. Inference always takes the nearest code, so the bitstream and
    # decoding are the same whichever trained the codebook (models/quantizer.py says which paper each follows):
    #   "nearest"  hard nearest neighbour, straight-through; the codebook by EMA or by the codebook loss (ema)
    #   "soft_em"  Monte-Carlo soft EM: em_samples codes drawn per frame from softmax(-distance^2 / em_temperature),
    #              each draw counting 1/em_samples in the EMA statistics (always EMA)
    #   "gumbel"   Gumbel-softmax relaxation over logits -distance^2, temperature annealed from gumbel_tau_start
    #              to gumbel_tau_end over gumbel_anneal_steps, a KL term to the uniform prior (always by gradient)
    method: str = "nearest"
    em_samples: int = 10
    em_temperature: float = 1.0
    gumbel_tau_start: float = 1.0
    gumbel_tau_end: float = 0.0625
    gumbel_anneal_steps: int = 5000
    gumbel_kl_weight: float = 0.01
    # Codes at two rates (models/two_rate.py, after VQ-VAE-2): a codebook of this size for top codes, one per pitch
    # frame, and the bottom codes (codebook_size) quantising what the top does not carry. 0: codes at one rate.
    top_codebook_size: int = 0

    @property
    def codebook_by_gradient(self) -> bool:
        """Whether the codewords are parameters an optimizer moves (else EMA statistics move them)."""
        return self.method == "gumbel" or (self.method == "nearest" and not self.ema)


QUANTIZER_METHODS = ("nearest", "soft_em", "gumbel")
# The fields of the codebook's training rule: left out of a model's fingerprint (vqvae.model_fingerprint), since
# inference takes the nearest code whichever rule trained the codebook.
QUANTIZER_TRAINING_RULE = ("method", "em_samples", "em_temperature", "gumbel_tau_start", "gumbel_tau_end",
                           "gumbel_anneal_steps", "gumbel_kl_weight")


@dataclass
class DecoderConfig:
    residual_channels: int = 64
    skip_channels: int = 64
    output_channels: int = 128  # hidden width of the output head before the 256-way softmax
    layers: int = 10
    dilation_cycle: int = 10  # dilation of layer i is 2 ** (i % dilation_cycle)
    cond_channels: int = 128  # width of the frame-rate conditioning network
    cond_layers: int = 2  # non-causal conv layers (kernel 3) over the codes at frame rate
    # Both read the parallel decoder's rendering of the same codes (need model.parallel_decoder; trained by
    # `vqspeech train-wavenet`). parallel_input: the rendering, mu-law companded, is one more sample-rate input, so
    # that the WaveNet models what it misses. lpc_order > 0: the LPC WaveNet (models/lpc.py): linear prediction of
    # this order fitted to the rendering per frame predicts x[t] from the past; the WaveNet predicts the excitation.
    parallel_input: bool = False
    lpc_order: int = 0
    pitch_lag: bool = False  # the LPC WaveNet is also fed e one pitch period back (models/lpc.pitch_lags)


@dataclass
class ParallelDecoderConfig:
    """The fast decoder: a frame-rate ConvNeXt predicts harmonic and noise spectral envelopes that filter a
    band-limited pulse train (from the pitch track) and white noise in the STFT domain (source-filter, as in
    DDSP); every learned operation runs at frame rate, so decoding is far faster than real time on a CPU."""

    channels: int = 192
    layers: int = 6
    kernel_size: int = 7
    n_fft: int = 512  # synthesis STFT; its hop is the model's hop
    max_harmonics: int = 160
    # Phase of the harmonic filter: "zero" (a real gain per bin: symmetric, buzzy pulses) or "minimum" (the
    # minimum-phase filter with the same magnitude, via the folded real cepstrum, as classical vocoders do:
    # a causal, decaying response per pulse like a vocal tract's).
    phase: str = "minimum"
    # The voice also scales and shifts every block's features (FiLM, Perez et al. 2018), not only the
    # conditioning network's input: a stronger path for a voice the codes do not carry (conversion). Its layers
    # start at zero, so a model given them renders exactly as before until they train.
    voice_film: bool = False


@dataclass
class ModelConfig:
    sample_rate: int = 16000
    mu_law_bits: int = 8
    latent_dim: int = 64
    speaker_dim: int = 64
    n_speakers: int = 1
    # Where the decoder's voice comes from: "table" (a learned row per training speaker: it can only render the
    # voices it was trained on) or "vector" (the utterance's own speaker-verification d-vector through a learned
    # linear map; the codec carries the mapped vector in the file, so an unseen speaker keeps their voice).
    voice: str = "table"
    # Pitch side information: speaker-normalised log-F0 quantised to `pitch_levels` values (0 = unvoiced),
    # one value per `pitch_frames` code frames; its bits count in the bitrate. The decoder also gets a
    # sinusoidal excitation built from it, so voicing does not have to be learnt from the codes alone.
    pitch: bool = True
    pitch_levels: int = 32
    pitch_frames: int = 4
    pitch_harmonics: int = 8
    pitch_z_range: float = 3.0  # normalised log-F0 is clipped to +-this many standard deviations
    preemphasis: float = 0.85  # 0 disables; the decoder models the pre-emphasised signal
    n_mels: int = 80  # auxiliary frame-rate target for the conditioning network
    mel_weight: float = 1.0  # 0 disables the auxiliary mel loss
    jitter: float = 0.0  # time-jitter probability on the codes during training (Chorowski et al. 2019)
    parallel_decoder: bool = False  # also build the fast parallel decoder (trained after the VQ-VAE, on it frozen)
    parallel: ParallelDecoderConfig = field(default_factory=ParallelDecoderConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    @property
    def hop(self) -> int:
        """Samples per code: the product of the encoder strides."""
        return math.prod(self.encoder.strides)

    @property
    def pitch_hop(self) -> int:
        return self.hop * self.pitch_frames


@dataclass
class DataConfig:
    manifest: str = ""  # path to a manifest (see vqspeech.data.manifest)
    crop_samples: int = 8192  # must be a multiple of the model's pitch hop
    batch_size: int = 8
    num_workers: int = 0
    # {corpus: weight} of a combined manifest (vqspeech combine): each crop's corpus is drawn with these weights
    # (unnamed corpora weigh 1), then an utterance of it uniformly. Empty: every corpus weighs 1.
    corpus_weights: dict = field(default_factory=dict)
    # voice="vector" models: probability that a crop is conditioned on another utterance's d-vector of the same
    # speaker rather than its own (see SpeechDataset).
    voice_swap: float = 0.0


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    base_model: str = ""  # checkpoint of the trained VQ-VAE, frozen under the parallel decoder (train-parallel only)
    steps: int = 100_000
    lr: float = 4e-4
    lr_min: float = 4e-5
    warmup_steps: int = 500
    grad_clip: float = 1.0
    bf16: bool = True  # autocast to bfloat16 where the device has it natively (else float32: see precision.native_bf16)
    compile: bool = False  # torch.compile the trained module (the WaveNet: 1.4x a step on a CPU; a minute to compile)
    seed: int = 0
    threads: int = 0  # torch threads; 0 leaves torch's default
    log_every: int = 25
    val_every: int = 500
    val_batches: int = 8
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    eval_every: int = 0  # held-out generation metrics (voicing, STOI, PESQ) every N steps; 0 = never
    eval_utterances: int = 3
    eval_seconds: float = 2.0
    # train-parallel only: weight of the conversion loss (a frozen speaker classifier's cross-entropy toward a
    # random other speaker, on the decoding of each crop in that speaker's voice; see
    # vqspeech/models/speaker_classifier.py), 0 = reconstruction only; and the classifier's training steps.
    speaker_loss_weight: float = 0.0
    speaker_classifier_steps: int = 400
    # train-parallel only: also train the codes (encoder, codebook, conditioning network, mel head, speaker
    # table) through the parallel decoder's loss. The WaveNet stays frozen, so it falls out of step with the
    # codes it was trained on: use it for a model whose decoder is the parallel one.
    joint: bool = False
    # train-parallel joint only: keep the encoder and codebook as the base model made them, so that the codes, the
    # model's fingerprint and any prior over its codes stay valid, while the conditioning network, mel head and
    # voice map still train with the decoder (how the voice is read can change, what the codes say cannot).
    freeze_codes: bool = False
    # train-parallel joint only: a speaker classifier on the quantized codes learns to name the speaker, and the
    # encoder gets its gradient reversed and scaled by this weight (vqspeech/models/speaker_adversary.py);
    # 0 = none.
    code_adversary_weight: float = 0.0
    # train-parallel, voice="vector" models: each crop is also decoded in another crop's voice (its utterance's
    # d-vector and pitch range), and resemblyzer's embedding of that decoding (speaker_encoder.embed_batch, frozen,
    # differentiable) is pulled toward the d-vector it was given: 1 - cosine, times this weight; 0 = none. What
    # converting to a voice the model never heard asks of the decoder.
    voice_loss_weight: float = 0.0
    # with voice_loss_weight: that same decoding's long-term spectrum (speaker_encoder-free: the mean log-mel of its
    # speech frames, features.spectral_profile) is pulled toward the other crop's own (L1, times this weight); 0 =
    # none. A second teacher of the voice that does not share resemblyzer's blind spots.
    voice_profile_weight: float = 0.0
    # with voice_loss_weight: the share of those conversions whose target is a virtual speaker, a random mixture of
    # two other crops' voices (d-vectors, renormalised; pitch ranges alike), so the voice map is taught between the
    # training speakers' d-vectors, where unseen ones fall, and not only at them; 0 = none.
    voice_mixup: float = 0.0
    # train-wavenet only: the previous samples the WaveNet is fed in training are moved by Gaussian noise of this many
    # mu-law classes (std), and it still predicts the clean next sample; 0 = none. Against exposure bias: teacher-forced
    # on the true past it leans on that past, which sampling does not have (LPCNet injects noise likewise).
    input_noise: float = 0.0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)



@dataclass
class PriorModelConfig:
    """The prior over the codes (vqspeech/models/prior.py): a causal transformer over the token stream of
    vqspeech/data/codes.py, conditioned on the voice. The alphabet and layout come from the codec model."""

    dim: int = 128
    layers: int = 3
    heads: int = 4
    ff_dim: int = 384
    window: int = 128  # positions each attends to, itself included (tokens; frames if frame_level)
    dropout: float = 0.1
    frame_level: bool = False  # one transformer step per pitch frame, a small network within it (models/frame_prior.py)
    local_dim: int = 256  # that network's hidden width
    local_dropout: float = 0.0  # on that network's output, in training
    # The code rows of the frame prior's embeddings and head get a part made from the codec's codebook vectors through
    # learned projections (neighbouring codes sound alike, so they start alike); folded into plain weights at export.
    tie_codebook: bool = False


@dataclass
class PriorTrainConfig:
    codes: str = ""  # the code cache (vqspeech/data/codes.py), written by train-prior from `manifest` if missing
    manifest: str = ""  # the corpus whose codes it learns (its "train" split; "valid" and "unseen" are scored)
    # More training streams from the same audio (the prior overfits ~3 M tokens), each cached beside `codes`; the
    # held-out sets stay as they are. time_shifts: the train split encoded again with its first s samples dropped
    # (0 < s < hop), so the hop grid falls elsewhere and the codes differ (codes.shift<s>.npz). speed_factors: played
    # f times faster (pitch and tempo both; Kaldi's speed perturbation), codes.speed<f>.npz.
    time_shifts: tuple[int, ...] = ()
    speed_factors: tuple[float, ...] = ()
    run_dir: str = "runs/prior"
    seq_len: int = 512  # tokens per training sequence (cut at random from the utterances)
    batch_size: int = 16
    steps: int = 3000
    lr: float = 2e-3
    lr_min: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0
    bf16: bool = False  # autocast (native bf16 CPUs, GPUs); the prior file is the exact integer twin either way
    log_every: int = 50
    val_every: int = 250
    checkpoint_every: int = 250


@dataclass
class PriorConfig:
    model: PriorModelConfig = field(default_factory=PriorModelConfig)
    train: PriorTrainConfig = field(default_factory=PriorTrainConfig)


def load_prior_config(*paths: str | Path, overrides: dict | None = None) -> PriorConfig:
    """Read YAML prior configs, each overlaid on the one before, then `overrides`."""
    return from_dict(PriorConfig, read_layers(paths, overrides))


def read_layers(paths, overrides: dict | None) -> dict:
    """YAML config files, each overlaid on the one before, then `overrides` -> one nested dict."""
    values: dict = {}
    for path in paths:
        values = merge(values, read_yaml(path))
    return merge(values, overrides or {})


def from_dict(cls: type, values: dict[str, Any] | None):
    """Build dataclass `cls` from a (possibly partial, nested) dict; unknown keys are an error."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        elif isinstance(default, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            # YAML 1.1 reads "5e-4" (no dot) as a string and "1" as an int: a float field takes either.
            try:
                kwargs[name] = float(value)
            except ValueError:
                raise ValueError(f"{cls.__name__}.{name}: {value!r} is not a number") from None
        elif default is not None and not isinstance(value, type(default)):
            raise ValueError(f"{cls.__name__}.{name}: {value!r} is not of type {type(default).__name__}")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def merge(base: dict, overlay: dict) -> dict:
    """Recursively overlay one nested dict on another (an overlay config on a base config)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(pairs: list[str]) -> dict:
    """["train.steps=10", "data.batch_size=2"] -> nested dict with YAML-typed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. train.steps=100")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def load_config(*paths: str | Path, overrides: dict | None = None) -> Config:
    """Read YAML config files, each overlaid on the one before, then `overrides`."""
    config = from_dict(Config, read_layers(paths, overrides))
    if config.data.crop_samples % config.model.pitch_hop:
        raise ValueError(f"data.crop_samples={config.data.crop_samples} must be a multiple of the pitch hop "
                         f"({config.model.pitch_hop} samples)")
    validate(config)
    return config


def read_yaml(path: str | Path) -> dict:
    """A config file -> its mapping; a one-line ValueError naming the file if it is not YAML or not a mapping."""
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ValueError(f"{path}: not valid YAML{at} ({getattr(e, 'problem', None) or type(e).__name__})") from None
    if values is not None and not isinstance(values, dict):
        raise ValueError(f"{path}: a config must be a mapping of sections (model:, data:, train:), not a {type(values).__name__}")
    return values or {}


# (dotted name, test, what it must be): checked when a config is loaded, before a run folder or a model exists.
_CHECKS = [
    ("model.quantizer.codebook_size", lambda v: v >= 2, "at least 2"),
    ("model.quantizer.method", lambda v: v in QUANTIZER_METHODS, "nearest, soft_em or gumbel"),
    ("model.quantizer.em_samples", lambda v: v >= 1, "at least 1"),
    ("model.quantizer.em_temperature", lambda v: v > 0, "positive"),
    ("model.quantizer.gumbel_tau_start", lambda v: v > 0, "positive"),
    ("model.quantizer.gumbel_tau_end", lambda v: v > 0, "positive"),
    ("model.quantizer.gumbel_anneal_steps", lambda v: v >= 1, "at least 1"),
    ("model.latent_dim", lambda v: v >= 1, "at least 1"),
    ("model.speaker_dim", lambda v: v >= 1, "at least 1"),
    ("model.pitch_levels", lambda v: v >= 2, "at least 2"),
    ("model.pitch_frames", lambda v: v >= 1, "at least 1"),
    ("data.batch_size", lambda v: v >= 1, "at least 1"),
    ("data.crop_samples", lambda v: v >= 1, "at least 1"),
    ("data.voice_swap", lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    ("train.steps", lambda v: v >= 0, "0 or more"),
    ("train.lr", lambda v: v > 0, "positive"),
    ("train.lr_min", lambda v: 0 <= v, "0 or more"),
    ("train.warmup_steps", lambda v: v >= 0, "0 or more"),
    ("train.grad_clip", lambda v: v > 0, "positive"),
    ("train.log_every", lambda v: v >= 1, "at least 1"),
    ("train.val_every", lambda v: v >= 1, "at least 1"),
    ("train.checkpoint_every", lambda v: v >= 1, "at least 1"),
    ("train.keep_checkpoints", lambda v: v >= 1, "at least 1"),
    ("train.threads", lambda v: v >= 0, "0 (torch's default) or more"),
    ("train.input_noise", lambda v: v >= 0, "0 (none) or more"),
]


def validate(config: "Config") -> None:
    """Every value that would fail only later (after a run folder exists, or hours into training): one ValueError
    naming the option."""
    for name, ok, must in _CHECKS:
        node = config
        for part in name.split("."):
            node = getattr(node, part)
        if not ok(node):
            raise ValueError(f"{name}={node!r}: must be {must}")


def to_dict(config) -> dict:
    return asdict(config)
