"""The codec's commands: encode, decode, info, convert (registered on vqspeech's parser by cli.build_parser). Each
only parses and checks; the work is codec/api.py's."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

MIN_RATE, MAX_RATE = 8000, 192000  # output rates soxr and soundfile handle sensibly; beyond them a typo, not a wish


def _sample_rate(text: str) -> int:
    """argparse type of --sample-rate: an integer in [MIN_RATE, MAX_RATE], else a usage error naming the option."""
    try:
        rate = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of Hz") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"{rate} Hz is outside {MIN_RATE}..{MAX_RATE}")
    return rate


def _steps(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of steps, 0 or more")
    return n


def _codec_model(args):
    from vqspeech import checkpoint
    from vqspeech.codec import api

    model = checkpoint.load(args.model)  # with its voice bank, if any: encode's nearest-voice choice uses it
    if args.speaker not in (None, api.AUTO_SPEAKER, "none"):  # a wrong name is a usage error, not one failure per file
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
    from vqspeech.codec import batch

    inputs, failures, several = batch.expand_inputs(args.inputs, batch.input_extensions(decode))
    rename = batch.decoded_name if decode else batch.encoded_name
    jobs, clashes = batch.plan_outputs(inputs, args.output, rename, several)
    return jobs, failures + clashes


def cmd_encode(args) -> int:
    from vqspeech.codec import api, batch

    jobs, failures = _plan(args, decode=False)
    model = _codec_model(args) if jobs else None

    def work(src, dst):
        h = api.encode_file(model, src, dst, force=args.force, speaker=None if args.speaker == "none" else args.speaker,
                            prior=False if args.no_prior else (args.prior or True), refine_steps=args.refine)
        size = dst.stat().st_size
        # Range-coded files are smaller than the packed payload the header's nominal bitrate counts: say which.
        coding = "range-coded under the prior" if h.prior else f"packed payload {h.bitrate / 1000:.2f} kbit/s"
        return (f"{src} -> {dst}: {h.duration:.2f} s, {size} bytes, {size * 8 / h.duration / 1000:.2f} kbit/s ({coding}), "
                f"voice {h.speaker or 'not recorded'}")

    n_inputs = len(jobs) + len(failures)
    failures += batch.run_batch(jobs, work, progress=not args.quiet)
    return _finish(n_inputs, failures)


def cmd_decode(args) -> int:
    from vqspeech.codec import api, batch

    jobs, failures = _plan(args, decode=True)
    model = _codec_model(args) if jobs else None

    def work(src, dst):
        h, speaker = api.decode_file(model, src, dst, force=args.force, force_model=args.force_model, speaker=args.speaker,
                                     sample_rate=args.sample_rate, seed=args.seed, decoder=args.decoder, prior_path=args.prior)
        return f"{src} -> {dst}: {h.duration:.2f} s, speaker {speaker}, {args.sample_rate or h.sample_rate} Hz"

    n_inputs = len(jobs) + len(failures)
    failures += batch.run_batch(jobs, work, progress=not args.quiet)
    return _finish(n_inputs, failures)


def cmd_info(args) -> int:
    from vqspeech.codec import bitstream

    failures = []
    for name in args.files:
        try:
            parsed, size = bitstream.read_file(name)
        except (ValueError, OSError) as e:
            failures.append((name, str(e)))
            continue
        h = parsed.header
        payload = h.payload_bytes if parsed.words is None else parsed.words.nbytes
        coding = (f"range-coded under prior {h.prior} ({payload * 8 / max(1, h.n_frames):.2f} bits a code, pitch included)"
                  if h.prior else f"packed ({h.code_bits} bits a code, {h.top_bits} a top code, {h.pitch_bits} a pitch symbol)"
                  if h.top_codebook_size else f"packed ({h.code_bits} bits a code, {h.pitch_bits} a pitch symbol)")
        seconds = h.duration
        pitch = (f"{h.n_pitch} x {h.pitch_bits} bits ({h.pitch_levels} levels, one per {h.pitch_frames} codes), "
                 f"log-F0 mean {h.lf0_mean:.4f} std {h.lf0_std:.4f}") if h.pitch_levels else "none"
        if seconds > 0:
            rates = (f"payload {payload} bytes = {payload * 8 / seconds:.1f} bit/s; whole file {size} bytes = "
                     f"{size * 8 / seconds:.1f} bit/s (header and checksum {size - payload} bytes)")
        else:
            rates = f"n/a for an empty recording (header and checksum {size - payload} bytes)"
        print(f"{name}: vqs version {h.version}, {size} bytes\n"
              f"  model      {h.model}\n"
              f"  audio      {seconds:.3f} s, {h.n_samples} samples at {h.sample_rate} Hz\n"
              f"  codes      {h.n_frames} x {h.code_bits} bits (codebook {h.codebook_size}, hop {h.hop}: {h.sample_rate / h.hop:g} codes/s)\n"
              + (f"  top codes  {h.n_top} x {h.top_bits} bits (codebook {h.top_codebook_size}, one per {h.pitch_frames} codes: "
                 f"codes at two rates)\n" if h.top_codebook_size else "") +
              f"  pitch      {pitch}\n"
              f"  speaker    {h.speaker if h.speaker is not None else '(not recorded)'}"
              f"{' (nearest training voice)' if h.voice and h.speaker else ''}\n"
              f"  voice      {_voice_line(h)}\n"
              f"  coding     {coding}\n"
              f"  bitrate    {h.bitrate:.1f} bit/s of codes and pitch packed (nominal)\n"
              f"  real       {rates}")
    return _finish(len(args.files), failures)


def _voice_line(h) -> str:
    if not h.voice:
        return "none (a table-voice model's file: it decodes in the recorded speaker's voice)"
    v = h.voice
    return (f"vector of {len(v)} values, {h.voice_bytes} bytes (int8 with a float16 scale), "
            f"norm {sum(x * x for x in v) ** 0.5:.3f}, first {', '.join(f'{x:+.3f}' for x in v[:3])}, ...")


def _vc_model(args, read_voices: bool = True):
    """The model with its speaker info and voice bank (--voices overrides the one beside the model)."""
    from vqspeech import checkpoint, speaker_encoder

    model = checkpoint.load(args.model)
    if read_voices and getattr(args, "voices", None):
        model.voice_bank = speaker_encoder.VoiceBank.load(args.voices, model)
    return model


def cmd_convert(args) -> int:
    import math

    from vqspeech import audio, conversion, latent_match
    from vqspeech.codec import api, batch

    inputs, failures, several = batch.expand_inputs(args.inputs, batch.input_extensions(decode=False))
    suffix = f".{args.to}.wav" if args.to else ".converted.wav"
    jobs, clashes = batch.plan_outputs(inputs, args.output, lambda name: Path(name).stem + suffix, several)
    failures += clashes
    n_inputs = len(jobs) + len(failures)
    if (args.match_k or args.match_search) and args.to is not None:
        raise ValueError("--match-k/--match-search match the input to reference recordings: give --to-reference, not --to")
    if args.match_k is not None and args.match_k < 0:
        raise ValueError(f"--match-k {args.match_k}: give a number of frames (0: no matching)")
    if args.match_blend is not None and not 0.0 < args.match_blend <= 1.0:
        raise ValueError(f"--match-blend {args.match_blend:g}: give the share of the way to the matches, in (0, 1]")
    for flag, value, least in (("--adapt-steps", args.adapt_steps, 1), ("--revoice", args.revoice, 0)):
        if value is not None and (args.to is not None or args.method not in (None, "adapt")):
            raise ValueError(f"{flag} tunes the decoder's adaptation to reference recordings: give --to-reference (method adapt)")
        if value is not None and value < least:
            raise ValueError(f"{flag} {value}: give at least {least}")
    model = _vc_model(args) if jobs else None
    voice = match = None
    if jobs and args.decoder == "parallel" and model.parallel is None:
        raise ValueError("this model has no parallel decoder; use --decoder autoregressive")
    if jobs and args.to is not None:
        args.to = api.speaker_name(model, args.to)  # a wrong name is a usage error, not one failure per file
    elif jobs:  # one voice for every input: the references are read and analysed once
        refs = [audio.load(r, model.config.sample_rate) for r in args.to_reference]
        adapting = (args.method or conversion.default_method(model)) == "adapt"  # = "embed", then the decoder adapted
        if not adapting and (args.adapt_steps is not None or args.revoice is not None):
            raise ValueError(f"--adapt-steps/--revoice tune method adapt; this model finds voices by "
                             f"{args.method or conversion.default_method(model)!r} (a vector-voice model such as anyvoice adapts)")
        try:
            voice = conversion.reference_voice(model, refs, method="embed" if adapting else args.method, bank=model.voice_bank)
        except ValueError as e:  # the references as a whole cannot place a voice: say which files they were
            raise ValueError(f"--to-reference {' '.join(map(str, args.to_reference))}: {e}") from None
        if adapting:  # the one slow step, once the references are known to place a voice: say so before it starts
            steps = args.adapt_steps or conversion.ADAPT_STEPS
            if not args.quiet:
                print(f"adapting the decoder to the references ({steps} steps, about {steps // 3} s on one core; "
                      "--method embed skips it)", file=sys.stderr)
            start = time.perf_counter()
            voice.decoder = conversion.adapt_decoder(model, refs, voice.vector, steps=steps, revoice=args.revoice)
            if not args.quiet:
                print(f"adapted in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        match = latent_match.reference_match(model, refs, args.match_k, args.match_blend, args.match_search)
        if voice.weights:
            top = sorted(voice.weights.items(), key=lambda kv: -kv[1])[:3]
            print("reference voice: " + ", ".join(f"{n} {w:.0%}" for n, w in top) +
                  f" of the training voices; median F0 {math.exp(voice.lf0[0]):.0f} Hz", file=sys.stderr)

    def work(src, dst):
        seconds, rtf = api.convert_file(model, src, dst, target=args.to, voice=voice, force=args.force,
                                            decoder=args.decoder, seed=args.seed, latent_map=match)
        return f"{src} -> {dst}: {seconds:.2f} s, voice {args.to or 'of the references'}, {rtf:.2f} s per second of audio"

    failures += batch.run_batch(jobs, work, progress=not args.quiet)
    return _finish(n_inputs, failures)


def add_commands(sub, model_help: str) -> None:
    p = sub.add_parser("encode", help="compress audio files to .vqs")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any common format and rate), folders or glob patterns")
    p.add_argument("-o", "--output", help="output file (one input) or folder (default: beside each input, as NAME.vqs)")
    p.add_argument("--model", help=model_help)
    p.add_argument("--speaker", default="auto",
                   help="the speaker to record in the files (decoding renders this voice): one of the model's, "
                        "'auto' (default: the nearest training voice, found from the recording) or 'none'")
    p.add_argument("--prior", help="range-code under this prior file (default: the model's, MODEL.prior.pt, where it has one)")
    p.add_argument("--no-prior", action="store_true", help="pack the codes plainly, 9 bits each (format version 3, no prior needed)")
    p.add_argument("--refine", type=_steps, default=0, metavar="STEPS",
                   help="analysis by synthesis: choose the codes (and voice) the decoder renders best, by STEPS gradient "
                        "steps per 4 s window (e.g. 60: better audio, some 20 %% more bits, encoding below real time)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="turn .vqs files back into speech")
    p.add_argument("inputs", nargs="+", metavar="IN", help=".vqs files, folders or glob patterns")
    p.add_argument("-o", "--output", help="output file (.wav/.flac/.ogg; one input) or folder (default: NAME.decoded.wav beside each input)")
    p.add_argument("--model", help=model_help)
    p.add_argument("--speaker", help="speaker to render (name or index; default: the one recorded in the file)")
    p.add_argument("--sample-rate", type=_sample_rate, default=None,
                   help=f"output sample rate, {MIN_RATE} to {MAX_RATE} Hz (default: the model's, 16000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same audio")
    p.add_argument("--decoder", choices=["autoregressive", "parallel"], default=None,
                   help="the WaveNet sample by sample, or the fast parallel decoder "
                        "(default: the parallel one if the model has it)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--force-model", action="store_true", help="decode files made by another model")
    p.add_argument("--prior", help="the prior of range-coded files (default: the model's, MODEL.prior.pt)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("convert", help="say the same words in another voice")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (any common format and rate), folders or glob patterns")
    voice = p.add_mutually_exclusive_group(required=True)
    voice.add_argument("--to", metavar="SPEAKER", help="one of the model's speakers (see `vqspeech speakers`)")
    voice.add_argument("--to-reference", nargs="+", metavar="REF", help="a few seconds of an unseen voice (one or more audio files)")
    p.add_argument("-o", "--output", help="output file (.wav/.flac/.ogg; one input) or folder (default: NAME.SPEAKER.wav or NAME.converted.wav beside each input)")
    p.add_argument("--model", help=model_help)
    p.add_argument("--method", choices=["embed", "adapt", "fit", "blend", "ridge"], default=None,
                   help="how --to-reference finds the voice (default: adapt for a vector-voice model such as anyvoice: "
                        "the references' d-vector, and the decoder fine-tuned to them, 30-40 s on one core; embed: the "
                        "d-vector alone, instant; fit for a table-voice model such as the default; see vqspeech/conversion.py)")
    p.add_argument("--voices", help="voice bank for --method blend/ridge (default: MODEL.voices.npz)")
    p.add_argument("--adapt-steps", type=int, default=None, metavar="N",
                   help="method adapt: fine-tuning steps (default conversion.ADAPT_STEPS, 120; each ~0.3 s on one core)")
    p.add_argument("--revoice", type=int, default=None, metavar="N",
                   help="method adapt: also teach the decoder the references' codes as N training voices leave them, so "
                        "that less of the input's own voice comes through (default conversion.REVOICE_VOICES, 4; 0: their own "
                        "codes only; --adapt-steps 60 --revoice 0: as before session 19, twice as fast, the target "
                        "named less often, a few more words: bench/results/vc-unseen-v4.1-adapt*-160.md)")
    p.add_argument("--match-k", type=int, default=None, metavar="K",
                   help="with --to-reference: each frame of the input's latents moved --match-blend of the way to the "
                        "mean of its K nearest frames of the references' (kNN-VC's matching, latent_match.LatentMatch): more "
                        "of the target's voice, fewer of the words (bench/results/vc-unseen-v4.1-adapt-*knn4*-160.md). "
                        "Default 4 for a vector-voice model such as anyvoice, 0 (no matching) for a table-voice model")
    p.add_argument("--match-blend", type=float, default=None, metavar="B",
                   help="the share of the way to the matches, in (0, 1] (default latent_match.MATCH_BLEND, 0.35; 1: kNN-VC's "
                        "replacement)")
    p.add_argument("--match-search", choices=["plain", "centred", "shifted"], default=None,
                   help="how the matches are found (default latent_match.MATCH_SEARCH): centred, with the input's mean "
                        "latent and the references' removed from each side; shifted, also moving the rest of each frame "
                        "by their difference; plain, as they are")
    p.add_argument("--decoder", choices=["autoregressive", "parallel"], default=None,
                   help="the WaveNet sample by sample, or the fast parallel decoder "
                        "(default: the parallel one if the model has it)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same audio")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("info", help="print the header and bitrate of .vqs files")
    p.add_argument("files", nargs="+", metavar="FILE.vqs")
    p.set_defaults(func=cmd_info)
