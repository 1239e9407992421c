"""Model files and checkpoints: everything needed to rebuild the model from the file alone, written atomically;
and `load`, the one way every command, the demo and library code get a model.

    load(path=None) -> VQSpeech        the shipped model by default, with its voice bank where one lies beside it

A checkpoint is a plain dict of tensors and primitives, so that it loads with ``weights_only=True``; `Checkpoint`
names its fields and their types, one place for every writer (the trainers, export) and reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import torch

import vqspeech
from vqspeech.config import ModelConfig, from_dict
from vqspeech.fileio import atomic_path
from vqspeech.models.vqvae import VQSpeech

FORMAT = "vqspeech-checkpoint"


class CheckpointError(ValueError):
    pass


class Cost(TypedDict):
    steps: int
    cpu_seconds: float


class Checkpoint(TypedDict, total=False):
    """What a checkpoint or model file holds. Written by Trainer.save (and its objective's state()) and by
    export_model; read by load_checkpoint. Required in every file: format, version, config, speakers, model."""

    format: str  # FORMAT
    version: str  # the package version that wrote it
    config: dict  # the whole Config (config.to_dict); its "model" part rebuilds the model
    speakers: list[str]  # the training speakers, in table order
    speaker_info: dict[str, dict]  # name -> {gender, accent, region, age}, where the corpus said
    step: int  # steps of the run that wrote it
    cpu_seconds: float  # CPU time of that run (all processes)
    model: dict[str, torch.Tensor]  # the state dict (float16 parameters in an export)
    # Resuming only (not in exports):
    optimizer: dict
    scheduler: dict
    generator: list[torch.Tensor]  # each process's data generator state
    torch_rng: torch.Tensor
    code_adversary: dict  # train-parallel with train.code_adversary_weight: the adversary's state dict
    # What earlier runs cost (training_cost): the VQ-VAE's under a parallel-decoder or WaveNet run, the parallel
    # decoder's earlier runs, a train-wavenet run's earlier WaveNet runs.
    base_training: Cost | None
    init_training: Cost | None
    wavenet_training: Cost | None
    # Exports only:
    training_cost: dict  # training_cost(): {"vqvae", "parallel", "wavenet"} parts in steps and CPU-hours
    weights_sha256: str  # weights_digest(model): a damaged file is refused


def save_checkpoint(path: str | Path, state: Checkpoint) -> None:
    """Write `state` (plus format and version) to a temporary file beside `path`, then rename: a crash
    at any moment leaves either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": vqspeech.__version__, **state}, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a vqspeech model file ({why_unreadable(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vqspeech model file")
    return ckpt


def why_unreadable(e: Exception) -> str:
    """torch.load's failure in a few words. Never its advice to retry with weights_only=False: that would run
    whatever code a pickle holds."""
    text = str(e)
    if "Weights only load failed" in text or "Unsupported global" in text:
        return "it holds Python objects, not only tensors; refused, since loading them could run code"
    import pickle

    if isinstance(e, (KeyError, EOFError, OSError, pickle.UnpicklingError)) or "zip" in text or "invalid load key" in text:
        return "not a PyTorch file, or a truncated one"
    return f"{type(e).__name__}: {text.splitlines()[0][:120]}" if text else type(e).__name__


def weights_digest(state: dict) -> str:
    """sha256 over a state dict (names, dtypes, shapes and bytes, in name order): what an exported model records,
    so that a file damaged after export (one flipped byte) is refused instead of silently encoding wrongly."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def model_from_checkpoint(ckpt: Checkpoint, path: str | Path = "model") -> VQSpeech:
    missing = [k for k in ("config", "speakers", "model") if k not in ckpt]
    if missing or not isinstance(ckpt["config"], dict) or not isinstance(ckpt["config"].get("model"), dict):
        raise CheckpointError(f"{path}: a damaged vqspeech model file (missing {', '.join(missing) or 'the model config'})")
    expected = ckpt.get("weights_sha256")
    if expected is not None and weights_digest(ckpt["model"]) != expected:
        raise CheckpointError(f"{path}: damaged: its weights do not match the checksum recorded when it was exported")
    config = from_dict(ModelConfig, ckpt["config"]["model"])
    model = VQSpeech(config, ckpt["speakers"])
    try:
        model.load_state_dict(ckpt["model"])  # strict: a mismatch is an error, never silently ignored
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: its weights do not fit its config ({first[:160]})") from None
    model.float()
    model.speaker_info = ckpt.get("speaker_info") or {}  # name -> {gender, accent, region}, where the corpus said
    return model


def load_model(path: str | Path) -> VQSpeech:
    """Rebuild a VQSpeech from a checkpoint or a shipped model file, in eval mode."""
    model = model_from_checkpoint(load_checkpoint(path), path)
    model.eval()
    return model


PRETRAINED = Path(__file__).resolve().parent / "pretrained"


def default_model_path() -> Path:
    """Where the shipped default model lives (inside the package); the one place to change it."""
    return PRETRAINED / "default.pt"


def shipped_models() -> list[str]:
    """Names of the model files that ship inside the package (`--model NAME` loads one)."""
    return sorted(p.stem for p in PRETRAINED.glob("*.pt") if not p.name.endswith(PRIOR_SUFFIX))


PRIOR_SUFFIX = ".prior.pt"


def prior_path(model_path: str | Path) -> Path:
    """Where a model's prior over its codes lives (codec/entropy.py): beside it, MODEL.prior.pt."""
    return Path(model_path).with_suffix(PRIOR_SUFFIX)


def resolve(path: str | Path | None) -> Path:
    """A model argument -> its file: None is the shipped default, a bare name of a shipped model (`anyvoice`) is
    that file, anything else a path."""
    if path is None:
        return default_model_path()
    if isinstance(path, str) and "/" not in path and not path.endswith(".pt") and (PRETRAINED / f"{path}.pt").exists():
        return PRETRAINED / f"{path}.pt"
    return Path(path)


def load(path: str | Path | None = None) -> VQSpeech:
    """The model at `path` (a checkpoint of `vqspeech train` / `train-parallel`, an exported model file, or the name of
    a model that ships in the package), or the shipped default, in eval mode; with `speaker_info` from the file and `voice_bank` (speaker_encoder.VoiceBank,
    or None) from MODEL.voices.npz beside it. A clear one-line error if there is no model."""
    from vqspeech import speaker_encoder

    if path is None and not default_model_path().exists():
        raise CheckpointError(f"no model given, and no default model is installed yet ({default_model_path()}): "
                              "pass --model PATH (a checkpoint written by `vqspeech train`)")
    path = resolve(path)
    model = load_model(path)
    bank = speaker_encoder.bank_path(path)
    model.voice_bank = speaker_encoder.VoiceBank.load(bank, model) if bank.exists() else None
    model.prior_path = prior_path(path)  # read only when something needs the prior (codec/entropy.prior_for)
    return model


def decoder_training(ckpt: Checkpoint) -> Cost:
    """{steps, cpu_seconds} of the parallel decoder of `ckpt`: those of the run that wrote it plus those of the earlier
    runs it was fine-tuned from (recorded as init_training by train-parallel). A train-wavenet checkpoint's own
    steps are its WaveNet's: its parallel decoder is its base's (init_training)."""
    earlier = ckpt.get("init_training") or {"steps": 0, "cpu_seconds": 0.0}
    if ckpt.get("wavenet_training"):
        return dict(earlier)
    return {"steps": earlier["steps"] + ckpt["step"], "cpu_seconds": earlier["cpu_seconds"] + ckpt["cpu_seconds"]}


def costs_before(base: Checkpoint, path: str | Path) -> tuple[Cost, Cost | None]:
    """What the model a run starts from (`base`, read from `path`) cost so far: (its VQ-VAE's, its parallel decoder's
    or None without one). A VQ-VAE checkpoint's own steps are its VQ-VAE's; a later run's record them as
    base_training, which a file with a parallel decoder must have."""
    parallel = bool(base["config"]["model"].get("parallel_decoder"))
    if base.get("base_training"):
        vqvae = dict(base["base_training"])
    elif parallel:
        raise CheckpointError(f"{path}: a parallel decoder without the record of its VQ-VAE's training")
    else:
        vqvae = {"steps": base["step"], "cpu_seconds": base["cpu_seconds"]}
    return vqvae, (decoder_training(base) if parallel else None)


def wavenet_training(ckpt: Checkpoint) -> Cost | None:
    """{steps, cpu_seconds} spent on the WaveNet alone by train-wavenet runs (this one and those before it), or None
    when no such run trained it (then its cost is the VQ-VAE's)."""
    earlier = ckpt.get("wavenet_training")
    if not earlier:
        return None
    return {"steps": earlier["steps"] + ckpt["step"], "cpu_seconds": earlier["cpu_seconds"] + ckpt["cpu_seconds"]}


def training_cost(ckpt: Checkpoint) -> dict:
    """{"vqvae": {steps, cpu_hours}, "parallel": {...} or None, "wavenet": {...} or None}: what training the model in
    `ckpt` took. A parallel-decoder run records the frozen VQ-VAE's cost as base_training; a VQ-VAE run has no
    parallel part; a train-wavenet run adds the WaveNet's own part on top of its base's."""
    def part(steps: int, cpu_seconds: float) -> dict:
        return {"steps": int(steps), "cpu_hours": round(float(cpu_seconds) / 3600, 3)}

    wavenet = wavenet_training(ckpt)
    base = ckpt.get("base_training")
    if wavenet is not None:
        parallel = part(**decoder_training(ckpt)) if ckpt["config"]["model"].get("parallel_decoder") else None
        return {"vqvae": part(**base), "parallel": parallel, "wavenet": part(**wavenet)}
    own = part(**decoder_training(ckpt))
    if ckpt["config"]["model"].get("parallel_decoder") and base:
        return {"vqvae": part(**base), "parallel": own, "wavenet": None}
    return {"vqvae": own, "parallel": None, "wavenet": None}


def export_model(src: str | Path, dst: str | Path, half: bool = True) -> dict:
    """Write the model of checkpoint `src` as a file to ship: no optimizer, scheduler or generator state, parameters
    in float16 when `half` (load_model casts them back to float32), the training cost recorded.
    Returns the training cost. The result is itself a checkpoint that load_model reads (but not --resume)."""
    ckpt = load_checkpoint(src)
    model = model_from_checkpoint(ckpt)  # strict load: never export a file that does not rebuild
    # Parameters only: buffers (codebook EMA statistics, speaker pitch ranges) are small, and the EMA sums can
    # exceed float16's range.
    params = {name for name, _ in model.named_parameters()}
    weights = {k: (v.half() if half and k in params else v).clone() for k, v in model.state_dict().items()}
    cost = training_cost(ckpt)
    save_checkpoint(dst, {"config": ckpt["config"], "speakers": ckpt["speakers"], "speaker_info": ckpt.get("speaker_info") or {},
                          "step": ckpt["step"], "cpu_seconds": ckpt["cpu_seconds"], "base_training": ckpt.get("base_training"),
                          "init_training": ckpt.get("init_training"), "wavenet_training": ckpt.get("wavenet_training"),
                          "training_cost": cost, "model": weights, "weights_sha256": weights_digest(weights)})
    return cost


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(run_dir).glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return ckpts[-1] if ckpts else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    ckpts = sorted(Path(run_dir).glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for old in ckpts[:-keep]:
        old.unlink()
