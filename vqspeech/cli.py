"""The `vqspeech` command line: parses arguments, checks paths, and calls the library. No logic here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml


def _parse_overrides(pairs: list[str]) -> dict:
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


def cmd_prepare(args) -> int:
    from vqspeech.data import corpora
    from vqspeech.data.prepare import prepare

    if args.corpus == "vcc2016":
        items = corpora.vcc2016(args.data, valid_sentences=args.valid)
    else:
        items = corpora.folder_per_speaker(args.data, valid_per_speaker=args.valid)
    manifest, problems = prepare(items, args.out)
    print(f"wrote {manifest} ({len(items) - len(problems)} utterances, {len(problems)} skipped)")
    return 1 if problems and args.strict else 0


def cmd_train(args) -> int:
    from vqspeech.config import load_config
    from vqspeech.train.loop import train

    config = load_config(*args.config, overrides=_parse_overrides(args.set))
    run_dir = train(config, resume=args.resume)
    print(f"done: {run_dir}")
    return 0


def _codec_model(args):
    from vqspeech.codec import api

    model = api.load(args.model)
    if args.speaker is not None:  # a wrong name is a usage error, not one failure per file
        api.speaker_name(model, args.speaker)
    return model


def _finish(n_inputs: int, failures: list) -> int:
    """The summary: nothing when all went well, else 'k of n files failed:' and one line each."""
    if not failures:
        return 0
    print(f"{len(failures)} of {n_inputs} files failed:", file=sys.stderr)
    for _, message in failures:
        print(f"  {message}", file=sys.stderr)
    return 1


def _plan(args, decode: bool):
    from vqspeech.codec import api

    inputs, failures, several = api.expand_inputs(args.inputs, api.input_extensions(decode))
    rename = api.decoded_name if decode else api.encoded_name
    jobs, clashes = api.plan_outputs(inputs, args.output, rename, several)
    return jobs, failures + clashes


def cmd_encode(args) -> int:
    from vqspeech.codec import api

    jobs, failures = _plan(args, decode=False)
    model = _codec_model(args) if jobs else None

    def work(src, dst):
        h = api.encode_file(model, src, dst, force=args.force, speaker=args.speaker)
        size = dst.stat().st_size
        return (f"{src} -> {dst}: {h.duration:.2f} s, {size} bytes, {h.bitrate / 1000:.2f} kbit/s "
                f"({size * 8 / h.duration / 1000:.2f} kbit/s with header)")

    n_inputs = len(jobs) + len(failures)
    failures += api.run_batch(jobs, work, progress=not args.quiet)
    return _finish(n_inputs, failures)


def cmd_decode(args) -> int:
    from vqspeech.codec import api

    jobs, failures = _plan(args, decode=True)
    model = _codec_model(args) if jobs else None

    def work(src, dst):
        h, speaker = api.decode_file(model, src, dst, force=args.force, force_model=args.force_model, speaker=args.speaker,
                                     sample_rate=args.sample_rate, seed=args.seed)
        return f"{src} -> {dst}: {h.duration:.2f} s, speaker {speaker}, {args.sample_rate or h.sample_rate} Hz"

    n_inputs = len(jobs) + len(failures)
    failures += api.run_batch(jobs, work, progress=not args.quiet)
    return _finish(n_inputs, failures)


def cmd_info(args) -> int:
    from vqspeech.codec import api

    failures = []
    for name in args.files:
        try:
            h, _, _, size = api.read_vqs(name)
        except (ValueError, OSError) as e:
            failures.append((name, str(e)))
            continue
        seconds = h.duration
        pitch = (f"{h.n_pitch} x {h.pitch_bits} bits ({h.pitch_levels} levels, one per {h.pitch_frames} codes), "
                 f"log-F0 mean {h.lf0_mean:.4f} std {h.lf0_std:.4f}") if h.pitch_levels else "none"
        whole = f"{size * 8 / seconds:.1f} bit/s for the whole file" if seconds > 0 else "n/a for an empty recording"
        print(f"{name}: vqs version {api.bitstream.VERSION}, {size} bytes\n"
              f"  model      {h.model}\n"
              f"  audio      {seconds:.3f} s, {h.n_samples} samples at {h.sample_rate} Hz\n"
              f"  codes      {h.n_frames} x {h.code_bits} bits (codebook {h.codebook_size}, hop {h.hop}: {h.sample_rate / h.hop:g} codes/s)\n"
              f"  pitch      {pitch}\n"
              f"  speaker    {h.speaker if h.speaker is not None else '(not recorded)'}\n"
              f"  bitrate    {h.bitrate:.1f} bit/s of codes and pitch; {whole}")
    return _finish(len(args.files), failures)


def _vc_model(args, read_voices: bool = True):
    """The model with its speaker info and voice bank (--voices overrides the one beside the model)."""
    from vqspeech import convert, speaker_encoder

    model = convert.load(args.model)
    if read_voices and getattr(args, "voices", None):
        model.voice_bank = speaker_encoder.VoiceBank.load(args.voices, model)
    return model


def cmd_convert(args) -> int:
    import math

    from vqspeech import audio, convert
    from vqspeech.codec import api

    inputs, failures, several = api.expand_inputs(args.inputs, api.input_extensions(decode=False))
    suffix = f".{args.to}.wav" if args.to else ".converted.wav"
    jobs, clashes = api.plan_outputs(inputs, args.output, lambda name: Path(name).stem + suffix, several)
    failures += clashes
    n_inputs = len(jobs) + len(failures)
    model = _vc_model(args) if jobs else None
    voice = None
    if jobs and args.decoder == "parallel" and model.parallel is None:
        raise ValueError("this model has no parallel decoder; use --decoder autoregressive")
    if jobs and args.to is not None:
        args.to = api.speaker_name(model, args.to)  # a wrong name is a usage error, not one failure per file
    elif jobs:  # one voice for every input: the references are read and analysed once
        refs = [audio.load(r, model.config.sample_rate) for r in args.to_reference]
        voice = convert.reference_voice(model, refs, method=args.method, bank=model.voice_bank)
        if voice.weights:
            top = sorted(voice.weights.items(), key=lambda kv: -kv[1])[:3]
            print("reference voice: " + ", ".join(f"{n} {w:.0%}" for n, w in top) +
                  f" of the training voices; median F0 {math.exp(voice.lf0[0]):.0f} Hz", file=sys.stderr)

    def work(src, dst):
        seconds, rtf = convert.convert_file(model, src, dst, target=args.to, voice=voice, force=args.force,
                                            decoder=args.decoder, seed=args.seed)
        return f"{src} -> {dst}: {seconds:.2f} s, voice {args.to or 'of the references'}, {rtf:.2f} s per second of audio"

    failures += api.run_batch(jobs, work, progress=not args.quiet)
    return _finish(n_inputs, failures)


def cmd_speakers(args) -> int:
    import json

    from vqspeech import convert

    model = _vc_model(args, read_voices=not args.enroll)
    if args.enroll:
        return _enroll(args, model)
    rows = convert.speakers(model)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'speaker':<12} {'gender':<8} {'accent':<16} {'median F0':>9}")
    for r in rows:
        print(f"{r['name']:<12} {r['gender'] or '-':<8} {r['accent'] or '-':<16} {r['f0_hz']:>6.0f} Hz")
    bank = "yes" if model.voice_bank is not None else "no (vqspeech speakers --enroll CORPUS builds one)"
    print(f"{len(rows)} speakers; voice bank for --to-reference methods blend/ridge: {bank}")
    return 0


def _enroll(args, model) -> int:
    """Build the voice bank from CORPUS/<speaker>/ audio of the model's speakers, and write it."""
    from vqspeech import audio, speaker_encoder
    from vqspeech.codec import api

    out = Path(args.voices) if args.voices else speaker_encoder.bank_path(args.model or api.default_model_path())
    if out.exists() and not args.force:
        raise ValueError(f"{out}: exists (use --force to overwrite)")
    utterances = {}
    for name in model.speaker_names:
        folder = Path(args.enroll) / name
        files = sorted(f for f in folder.glob("*") if f.suffix.lower() in audio.AUDIO_EXTENSIONS)[: args.per_speaker] if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"{folder}: no audio for speaker {name}")
        utterances[name] = [audio.load(f, model.config.sample_rate) for f in files]
    speaker_encoder.VoiceBank.build(model.speaker_names, utterances).save(out)
    print(f"wrote {out} ({len(utterances)} speakers, up to {args.per_speaker} utterances each)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqspeech", description="Speech codec and voice conversion on VQ-VAE codes.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="resample, trim and normalise a corpus, and write its manifest")
    p.add_argument("corpus", choices=["vcc2016", "folder"])
    p.add_argument("--data", required=True, help="corpus root (ROOT/<speaker>/*.wav|flac)")
    p.add_argument("--out", required=True, help="output folder for prepared audio and manifest.csv")
    p.add_argument("--valid", type=int, default=12, help="held-out sentences (vcc2016) or files per speaker (folder)")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any file was skipped")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a VQ-VAE model")
    p.add_argument("--config", action="append", default=[], help="YAML config; repeat to overlay")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run_dir")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("encode", help="compress audio files to .vqs")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any common format and rate), folders or glob patterns")
    p.add_argument("-o", "--output", help="output file (one input) or folder (default: beside each input, as NAME.vqs)")
    p.add_argument("--model", help="model file (default: the model shipped with vqspeech)")
    p.add_argument("--speaker", help="record this speaker (one of the model's) in the files")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn .vqs files back into speech")
    p.add_argument("inputs", nargs="+", metavar="IN", help=".vqs files, folders or glob patterns")
    p.add_argument("-o", "--output", help="output file (.wav/.flac/.ogg; one input) or folder (default: NAME.decoded.wav beside each input)")
    p.add_argument("--model", help="model file (default: the model shipped with vqspeech)")
    p.add_argument("--speaker", help="speaker to render (name or index; default: the one recorded in the file)")
    p.add_argument("--sample-rate", type=int, default=None, help="output sample rate (default: the model's, 16000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same audio")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--force-model", action="store_true", help="decode files made by another model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("convert", help="say the same words in another voice")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any common format and rate), folders or glob patterns")
    voice = p.add_mutually_exclusive_group(required=True)
    voice.add_argument("--to", metavar="SPEAKER", help="one of the model's speakers (see `vqspeech speakers`)")
    voice.add_argument("--to-reference", nargs="+", metavar="REF", help="a few seconds of an unseen voice (one or more audio files)")
    p.add_argument("-o", "--output", help="output file (.wav/.flac/.ogg; one input) or folder (default: NAME.SPEAKER.wav or NAME.converted.wav beside each input)")
    p.add_argument("--model", help="model file (default: the model shipped with vqspeech)")
    p.add_argument("--method", choices=["fit", "blend", "ridge"], default="fit", help="how --to-reference finds the voice (see vqspeech/convert.py)")
    p.add_argument("--voices", help="voice bank for --method blend/ridge (default: MODEL.voices.npz)")
    p.add_argument("--decoder", choices=["autoregressive", "parallel"], default="autoregressive")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same audio")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("speakers", help="list the model's speakers, or build its voice bank (--enroll)")
    p.add_argument("--model", help="model file (default: the model shipped with vqspeech)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--enroll", metavar="CORPUS", help="build the voice bank from CORPUS/<speaker>/ audio of the model's speakers")
    p.add_argument("--per-speaker", type=int, default=20, help="utterances per speaker for --enroll")
    p.add_argument("--voices", help="voice bank to read or write (default: MODEL.voices.npz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing voice bank")
    p.set_defaults(func=cmd_speakers)

    p = sub.add_parser("info", help="print the header and bitrate of .vqs files")
    p.add_argument("files", nargs="+", metavar="FILE.vqs")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:  # our errors carry the file and the problem
        print(f"vqspeech: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
