"""The prior's commands: train-prior, sample, continue (registered on vqspeech's parser by cli.build_parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vqspeech.config import parse_overrides


def cmd_train_prior(args) -> int:
    from vqspeech import checkpoint
    from vqspeech.config import load_prior_config
    from vqspeech.train.prior_loop import PriorTrainer, export_prior

    model_path = checkpoint.resolve(args.model)
    config = load_prior_config(*args.config, overrides=parse_overrides(args.set))
    trainer = PriorTrainer(config, model_path, resume=args.resume)
    run_dir = trainer.fit()
    out = Path(args.out) if args.out else run_dir / "prior.pt"
    last = checkpoint.latest_checkpoint(run_dir)
    prior = export_prior(last, out, info={"heldout": trainer.last_validation or trainer.validate()})
    print(f"done: {run_dir}; prior {prior.id} -> {out}" + ("" if args.out else
          f" (to ship it with the model: cp {out} {checkpoint.prior_path(model_path)})"))
    return 0


def _model_and_prior(args):
    from vqspeech import checkpoint
    from vqspeech.codec import entropy

    model = checkpoint.load(args.model)
    return model, entropy.prior_for(model, args.prior)


def _check_output(args) -> Path:
    """Refused before any work: an output that exists (without --force), or of a format we do not write."""
    out = Path(args.output)
    if out.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise ValueError(f"{out}: the output must be a .wav, .flac or .ogg file")
    if out.exists() and not args.force:
        raise FileExistsError(f"{out}: exists (use --force to overwrite)")
    return out


def _write(args, wav, rate: int) -> None:
    from vqspeech import audio

    audio.save(Path(args.output), wav, rate, force=args.force)


def cmd_sample(args) -> int:
    from vqspeech.codec import api
    from vqspeech.sample import sample_speech

    _check_output(args)
    model, prior = _model_and_prior(args)
    speaker = api.speaker_name(model, args.speaker)
    wav = sample_speech(model, prior, speaker, args.seconds, args.temperature, args.top_k, args.seed)
    _write(args, wav, model.config.sample_rate)
    print(f"{args.output}: {len(wav) / model.config.sample_rate:.2f} s sampled from prior {prior.id} in {speaker}'s voice "
          f"(temperature {args.temperature:g}, top-k {args.top_k or 'all'}, seed {args.seed})")
    return 0


def cmd_continue(args) -> int:
    from vqspeech import audio
    from vqspeech.sample import continue_speech

    _check_output(args)
    model, prior = _model_and_prior(args)
    wav = audio.load(args.input, model.config.sample_rate)
    out, start = continue_speech(model, prior, wav, args.seconds, args.temperature, args.top_k, args.seed)
    _write(args, out, model.config.sample_rate)
    rate = model.config.sample_rate
    print(f"{args.output}: {start / rate:.2f} s of {args.input} decoded from its codes, then {(len(out) - start) / rate:.2f} s "
          f"continued by prior {prior.id}")
    return 0


def _sampling_options(p: argparse.ArgumentParser, model_help: str) -> None:
    p.add_argument("--seconds", type=float, default=4.0, help="how much speech to draw (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the prior's logits: below 1 plays safe (default 1)")
    p.add_argument("--top-k", type=int, default=0, help="draw only among the k likeliest tokens (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same speech")
    p.add_argument("-o", "--output", required=True, help="the audio file to write (.wav, .flac, .ogg)")
    p.add_argument("--model", help=model_help)
    p.add_argument("--prior", help="the prior file (default: the model's, MODEL.prior.pt)")
    p.add_argument("--force", action="store_true", help="overwrite the output")


def add_commands(sub, model_help: str, training_options) -> None:
    p = sub.add_parser("train-prior", help="train the prior over a model's codes (entropy model and sampler)")
    p.add_argument("--model", help=model_help + "; its codes are what the prior learns")
    p.add_argument("--out", help="where to write the prior file (default: RUN_DIR/prior.pt)")
    training_options(p)
    p.set_defaults(func=cmd_train_prior)

    p = sub.add_parser("sample", help="speech from the prior: codes drawn from it, rendered by the decoder")
    p.add_argument("--speaker", required=True, help="a training speaker of the model (see `vqspeech speakers`)")
    _sampling_options(p, model_help)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("continue", help="continue a recording from its codes with the prior, in its voice")
    p.add_argument("input", help="the recording to continue (any common audio format)")
    _sampling_options(p, model_help)
    p.set_defaults(func=cmd_continue)
