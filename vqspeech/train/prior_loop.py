"""train-prior: the prior over the codes of a frozen codec model (vqspeech/models/prior.py).

The codes are extracted once (vqspeech/data/codes.py, cached beside the run) and the model never runs again: a
step is one batch of `seq_len`-token stretches cut at random from the training split's streams. Held-out
cross-entropy (bits per code and per pitch symbol) on each held-out set, against CPU-hours, goes to valid.csv;
checkpoints are resumable like every other training (`--resume`).

Held-out sets: the "valid" split per corpus (other sentences of the training speakers) and the "unseen" split
(speakers no training run hears).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from vqspeech import checkpoint
from vqspeech.config import PriorConfig, PriorModelConfig, from_dict
from vqspeech.data.codes import CodeCorpus, TokenLayout
from vqspeech.fileio import atomic_path, remove_stale_temporaries
from vqspeech.models.frame_prior import FramePrior
from vqspeech.models.prior import PAD, CodePrior
from vqspeech.precision import native_bf16
from vqspeech.train.fit import Every, Optimisation, RunProgress, append_row, fit

log = logging.getLogger(__name__)
FORMAT = "vqspeech-prior-checkpoint"


def heldout_sets(corpus: CodeCorpus) -> dict[str, CodeCorpus]:
    """{name: utterances}: "valid-<corpus>" for each corpus's valid split, and "unseen"."""
    sets = {}
    for name in sorted(set(corpus.corpora)):
        part = corpus.select(lambda i, n=name: corpus.splits[i] == "valid" and corpus.corpora[i] == n)
        if part.tokens:
            sets[f"valid-{name or 'corpus'}"] = part
    unseen = corpus.select(lambda i: corpus.splits[i] == "unseen")
    if unseen.tokens:
        sets["unseen"] = unseen
    return sets


def build_prior(config: PriorModelConfig, layout: TokenLayout, voice_dim: int,
                codebook: torch.Tensor | None = None) -> CodePrior | FramePrior:
    """The float prior `config` names: a transformer step per token (CodePrior) or per pitch frame (FramePrior;
    `codebook`, the codec's code vectors, for model.tie_codebook)."""
    if config.tie_codebook and not config.frame_level:
        raise ValueError("model.tie_codebook: only a frame prior (model.frame_level) ties its tables to the codebook")
    if config.frame_level:
        return FramePrior(config, layout, voice_dim, codebook)
    return CodePrior(config, layout, voice_dim)


def sample_batch(corpus: CodeCorpus, layout: TokenLayout, seq_len: int, batch: int, rng: np.random.Generator):
    """-> (tokens [B, seq_len] long, PAD past a stream's end; previous [B, period]: the frame before each stretch,
    start_token throughout where it starts the stream; voices [B, D]). Utterances drawn in proportion to their
    length; each stretch starts at a random pitch-frame boundary."""
    lengths = np.array([len(t) for t in corpus.tokens], np.float64)
    picks = rng.choice(len(lengths), batch, p=lengths / lengths.sum())
    tokens = np.full((batch, seq_len), PAD, np.int64)
    previous = np.full((batch, layout.period), layout.vocab, np.int64)
    for b, i in enumerate(picks):
        t = corpus.tokens[i]
        frames = max(1, (len(t) - seq_len) // layout.period + 1)
        start = int(rng.integers(frames)) * layout.period if len(t) > seq_len else 0
        piece = t[start : start + seq_len]
        tokens[b, : len(piece)] = piece
        if start:
            previous[b] = t[start - layout.period : start]
    return torch.from_numpy(tokens), torch.from_numpy(previous), torch.from_numpy(corpus.voices[picks]).float()


@torch.no_grad()
def evaluate(prior: CodePrior | FramePrior, corpus: CodeCorpus, max_tokens: int = 4096) -> dict[str, float]:
    """Teacher-forced bits per code and per pitch symbol over whole streams (each from its start, cut at
    max_tokens, in whole frames for a FramePrior), and the payload's bits per second that would cost."""
    prior.eval()
    if isinstance(prior, FramePrior):
        max_tokens -= max_tokens % prior.layout.period
    sums = {"code": 0.0, "pitch": 0.0}
    counts = {"code": 0, "pitch": 0}
    for t, voice in zip(corpus.tokens, corpus.voices):
        x = torch.from_numpy(t[:max_tokens].astype(np.int64))[None]
        _, m = prior.loss(x, torch.from_numpy(voice).float()[None])
        for kind in sums:
            if f"n/{kind}" in m:
                sums[kind] += float(m[f"bits/{kind}"]) * int(m[f"n/{kind}"])
                counts[kind] += int(m[f"n/{kind}"])
    prior.train()
    out = {f"bits/{k}": sums[k] / counts[k] for k in sums if counts[k]}
    return out


def payload_bits_per_second(metrics: dict[str, float], layout: TokenLayout, codes_per_second: float) -> float:
    pitch = metrics.get("bits/pitch", 0.0) / layout.pitch_frames if layout.pitch_levels else 0.0
    return codes_per_second * (metrics["bits/code"] + pitch)


class PriorTrainer(RunProgress):
    def __init__(self, config: PriorConfig, model_path: str | Path, resume: bool = False):
        t = config.train
        self.config = config
        self.run_dir = Path(t.run_dir)
        if t.threads:
            torch.set_num_threads(t.threads)
        codec = checkpoint.load(model_path)
        from vqspeech.codec.api import fingerprint

        self.fingerprint, self.model_path = fingerprint(codec), str(model_path)
        self.layout = TokenLayout.of(codec.config)
        self.codes_per_second = codec.config.sample_rate / codec.config.hop
        codes_path = Path(t.codes) if t.codes else self.run_dir / "codes.npz"
        # Checked before any extraction: a bad value should not wait for an hour of encoding to be named.
        variants = augmented_caches(codes_path, t.time_shifts, t.speed_factors, codec.config.hop)
        corpus = self._codes(codec, codes_path, "", None)
        self.train_set = corpus.select(lambda i: corpus.splits[i] == "train")
        for path, variant in variants:
            extra = self._codes(codec, path, f" for {variant}", ("train",), **variant)
            self.train_set = self.train_set.extend(extra.select(lambda i: extra.splits[i] == "train"))
        self.heldout = heldout_sets(corpus)
        torch.manual_seed(t.seed)
        if config.model.frame_level and t.seq_len % self.layout.period:
            raise ValueError(f"train.seq_len {t.seq_len} is not a whole number of frames of {self.layout.period} tokens")
        self.prior = build_prior(config.model, self.layout, corpus.voices.shape[1], codec.quantizer.codebook)
        self.optimisation = Optimisation(config, self.prior.parameters(), {"": self.prior}, optimizer=torch.optim.AdamW,
                                         bf16=t.bf16 and native_bf16(torch.device("cpu")),
                                         weight_decay=t.weight_decay, betas=(0.9, 0.98))
        self.rng = np.random.default_rng(t.seed)
        self.last_validation: dict[str, float] | None = None  # of the step fit() ended on, for the prior file
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir)
        last = checkpoint.latest_checkpoint(self.run_dir)
        if resume and last is not None:
            self._resume(last)
        log.info("prior: %.2f M parameters, %d training streams (%d tokens), held out: %s",
                 sum(p.numel() for p in self.prior.parameters()) / 1e6, len(self.train_set.tokens),
                 sum(map(len, self.train_set.tokens)), ", ".join(f"{k} ({len(v.tokens)})" for k, v in self.heldout.items()))

    def _codes(self, codec, path: Path, what: str, splits: tuple[str, ...] | None, **variant) -> CodeCorpus:
        """The code cache at `path`: extracted from train.manifest where one is given (kept if already there), else
        read; refused if it holds another model's codes."""
        manifest = self.config.train.manifest
        if not path.exists() and not manifest:
            raise ValueError(f"{path}: no code cache{what}; give train.manifest to extract one")
        corpus = extract_codes(codec, Path(manifest), path, splits=splits, **variant) if manifest else CodeCorpus.load(path)
        if corpus.fingerprint != self.fingerprint:
            raise ValueError(f"{path}: codes of model {corpus.fingerprint}, not of {self.model_path} ({self.fingerprint})")
        return corpus

    def _resume(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != FORMAT:
            raise ValueError(f"{path}: not a prior checkpoint")
        if ckpt["model_fingerprint"] != self.fingerprint:
            raise ValueError(f"{path}: a prior of model {ckpt['model_fingerprint']}, not of {self.model_path}")
        self.prior.load_state_dict(ckpt["prior"])
        self.optimisation.load_state_dict(ckpt)
        self.rng = np.random.default_rng([self.config.train.seed, self.step])
        log.info("resumed from %s (step %d)", path, self.step)

    def save(self) -> Path:
        path = self.run_dir / f"checkpoint-{self.step}.pt"
        state = {"format": FORMAT, "config": asdict(self.config), "model_fingerprint": self.fingerprint,
                 "layout": asdict(self.layout), "voice_dim": self.prior.voice_dim, "prior": self.prior.state_dict(),
                 **self.optimisation.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        checkpoint.prune_checkpoints(self.run_dir, 3)
        return path

    def validate(self) -> dict[str, float]:
        row = {}
        for name, part in self.heldout.items():
            m = evaluate(self.prior, part)
            row.update({f"{name}/{k}": v for k, v in m.items()})
            row[f"{name}/payload_bps"] = payload_bits_per_second(m, self.layout, self.codes_per_second)
        return row

    def _log(self, values: dict[str, float]) -> None:
        append_row(self.run_dir / "valid.csv", self.step, self.cpu_seconds, values, digits=4)

    def fit(self) -> Path:
        t = self.config.train
        last: dict[str, torch.Tensor] = {}

        def train_step() -> None:
            tokens, previous, voices = sample_batch(self.train_set, self.layout, t.seq_len, t.batch_size, self.rng)
            with self.optimisation.autocast():
                loss, metrics = self.prior.loss(tokens, voices, previous)
            self.optimisation.update({"ce": loss})
            last.clear()
            last.update(metrics)

        def log_train() -> None:
            log.info("step %d  %.3f bits/code  %.3f bits/pitch  (%.3f CPU-h)", self.step, float(last["bits/code"]),
                     float(last.get("bits/pitch", math.nan)), self.cpu_seconds / 3600)

        def validate() -> None:
            row = self.last_validation = self.validate()
            self._log(row)
            log.info("held out: %s", "  ".join(f"{k} {v:.3f}" for k, v in row.items() if "bits/code" in k))

        self.prior.train()
        fit(self.optimisation, t.steps, train_step, [Every(t.log_every, log_train), Every(t.val_every, validate, at_end=True),
                                                   Every(t.checkpoint_every, self.save, at_end=True)])
        return self.run_dir


def load_prior_checkpoint(path: str | Path) -> tuple[CodePrior | FramePrior, dict]:
    """A prior checkpoint -> (the float prior in eval mode, the checkpoint dict)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a prior checkpoint")
    config = from_dict(PriorConfig, ckpt["config"])
    prior = build_prior(config.model, TokenLayout(**ckpt["layout"]), ckpt["voice_dim"], ckpt["prior"].get("code_vectors"))
    prior.load_state_dict(ckpt["prior"])
    return prior.eval(), ckpt


def augmented_caches(codes_path: Path, time_shifts, speed_factors, hop: int) -> list[tuple[Path, dict]]:
    """[(cache path beside `codes_path`, extract_codes' keyword arguments)] for each training-set variant."""
    out = []
    for shift in time_shifts:
        if not 0 < shift < hop:
            raise ValueError(f"train.time_shifts: {shift} is not between 0 and the hop ({hop})")
        out.append((codes_path.with_name(f"{codes_path.stem}.shift{shift}{codes_path.suffix}"), {"shift": shift}))
    for speed in speed_factors:
        if not 0.5 <= speed <= 2.0 or speed == 1.0:
            raise ValueError(f"train.speed_factors: {speed} is not a speed between 0.5 and 2 other than 1")
        out.append((codes_path.with_name(f"{codes_path.stem}.speed{speed:g}{codes_path.suffix}"), {"speed": speed}))
    return out


def extract_codes(model, manifest: Path, out: Path, progress: bool = True, shift: int = 0, speed: float = 1.0,
                  splits: tuple[str, ...] | None = None) -> CodeCorpus:
    """Every utterance of `manifest` (of `splits`, default all) encoded as `vqspeech encode` writes it (speaker
    "auto"), its first `shift` samples dropped, played `speed` times faster -> a CodeCorpus, saved to `out` (.npz).
    A cache of the same model's fingerprint at `out` is returned as it is."""
    import soxr
    from tqdm import tqdm

    from vqspeech import audio
    from vqspeech.codec import api, bitstream
    from vqspeech.data.codes import default_voice, tokens_of
    from vqspeech.data.manifest import read_manifest

    fp = api.fingerprint(model)
    if out.exists():
        cached = CodeCorpus.load(out)
        if cached.fingerprint == fp:
            return cached
    layout = TokenLayout.of(model.config)
    rows = [r for r in read_manifest(manifest) if splits is None or r.split in splits]
    tokens, voices, speakers, corpora, row_splits = [], [], [], [], []
    for row in tqdm(rows, desc="codes", unit="file", disable=not progress):
        wav = audio.load(row.path, model.config.sample_rate)[shift:]
        if speed != 1.0:  # read as if recorded at speed x the rate: 1/speed as long, pitch x speed
            wav = soxr.resample(wav, model.config.sample_rate * speed, model.config.sample_rate).astype(np.float32)
        header, codes, pitch = bitstream.unpack(api.encode_audio(model, wav, speaker=api.AUTO_SPEAKER, prior=False))
        tokens.append(tokens_of(codes, pitch, layout).astype(np.int16))
        voices.append(default_voice(model, header))
        speakers.append(row.speaker)
        corpora.append(row.corpus or "")
        row_splits.append(row.split)
    corpus = CodeCorpus(tokens, np.stack(voices), speakers, corpora, row_splits, fp)
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus.save(out)
    return corpus


def export_prior(checkpoint_path: str | Path, out: str | Path, info: dict | None = None):
    """A train-prior checkpoint -> a prior file at `out` (its exact twin's integers: codec/entropy.write_prior)."""
    from vqspeech.codec import entropy
    from vqspeech.models.frame_prior_exact import ExactFramePrior
    from vqspeech.models.prior_exact import ExactPrior

    float_prior, ckpt = load_prior_checkpoint(checkpoint_path)
    info = {"steps": ckpt["step"], "cpu_seconds": round(ckpt["cpu_seconds"], 1), "config": ckpt["config"], **(info or {})}
    twin = ExactFramePrior if isinstance(float_prior, FramePrior) else ExactPrior
    return entropy.write_prior(twin.freeze(float_prior), ckpt["model_fingerprint"], info, out)
