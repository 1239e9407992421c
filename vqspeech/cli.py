"""The `vqspeech` command line: parses arguments, checks paths, and calls the library. No logic here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import vqspeech
from vqspeech.config import parse_overrides


from vqspeech.cli_codec import _vc_model

MODEL_HELP = "model file, or the name of one that ships in the package (default: the default model)"
def cmd_prepare(args) -> int:
    from vqspeech.data import corpora
    from vqspeech.data.prepare import prepare

    unseen = tuple(s for s in args.unseen.split(",") if s) if args.unseen is not None else None
    items, speakers = corpora.read_corpus(args.corpus, args.data, valid=args.valid, unseen=unseen, mic=args.mic)
    manifest, problems = prepare(items, args.out, top_db=args.top_db, speakers=speakers, jobs=args.jobs, corpus=args.corpus)
    print(f"wrote {manifest} ({len(items) - len(problems)} utterances, {len(problems)} skipped)")
    return 1 if problems and args.strict else 0


def cmd_combine(args) -> int:
    from vqspeech.data.manifest import combine_manifests

    out, counts = combine_manifests(args.manifests, args.out)
    print(f"wrote {out} ({', '.join(f'{c}: {n} utterances' for c, n in counts.items())})")
    return 0


def cmd_synth_corpus(args) -> int:
    from vqspeech.data import synth

    made, kept = synth.synthesize_corpus(args.out, synth.read_prompts(args.text), args.speakers, args.per_speaker, args.flite)
    print(f"wrote {args.out} ({made + kept} utterances: {made} made now, {kept} already there)")
    return 0


def cmd_train(args) -> int:
    from vqspeech.config import load_config
    from vqspeech.train.loop import train

    config = load_config(*args.config, overrides=parse_overrides(args.set))
    run_dir = train(config, resume=args.resume)
    print(f"done: {run_dir}")
    return 0


def _train_on_base(args, train) -> int:
    """train-parallel and train-wavenet: the config with --base-model as train.base_model, then `train(config, resume)`."""
    from vqspeech.config import load_config

    overrides = parse_overrides(args.set)
    overrides.setdefault("train", {})["base_model"] = args.base_model
    run_dir = train(load_config(*args.config, overrides=overrides), resume=args.resume)
    print(f"done: {run_dir}")
    return 0


def cmd_train_parallel(args) -> int:
    from vqspeech.train.parallel_loop import train_parallel

    return _train_on_base(args, train_parallel)


def cmd_train_wavenet(args) -> int:
    from vqspeech.train.wavenet_loop import train_wavenet

    return _train_on_base(args, train_wavenet)


def cmd_export(args) -> int:
    from vqspeech import checkpoint

    out = Path(args.output)
    if out.exists() and not args.force:
        raise ValueError(f"{out}: exists (use --force to overwrite)")
    cost = checkpoint.export_model(args.checkpoint, out, half=not args.float32)
    parts = [f"{name} {c['steps']} steps, {c['cpu_hours']:.2f} CPU-hours" for name, c in cost.items() if c]
    print(f"{args.checkpoint} -> {out}: {out.stat().st_size / 1e6:.1f} MB ({'; '.join(parts)})")
    return 0


def cmd_demo(args) -> int:
    """The demo lives in the source checkout's app/, which owns its launcher (`python -m app`): start that, in a
    process of its own, rather than import the checkout from the package."""
    import subprocess
    from pathlib import Path

    import vqspeech
    from vqspeech import checkpoint

    if args.max_seconds <= 0 or args.max_file_mb <= 0:
        raise SystemExit("vqspeech demo: --max-seconds and --max-file-mb must be positive")
    checkpoint.load(args.model)  # here, so that a missing model is said at once and by this command
    root = Path(vqspeech.__file__).resolve().parents[1]
    if not (root / "app" / "__main__.py").exists():
        raise SystemExit(f"vqspeech demo: the demo is not installed ({root / 'app'} is missing): run it from a source checkout")
    argv = [sys.executable, "-m", "app", "--model", str(checkpoint.resolve(args.model).resolve()), "--host", args.host,
            "--port", str(args.port), "--max-seconds", str(args.max_seconds), "--max-file-mb", str(args.max_file_mb)]
    try:
        return subprocess.run(argv, cwd=root).returncode
    except KeyboardInterrupt:  # Ctrl-C reached both processes; the demo cleans up on its own
        return 0


def _training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], help="YAML config; repeat to overlay")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run_dir")


def cmd_speakers(args) -> int:
    import json

    from vqspeech import checkpoint, conversion

    model = _vc_model(args, read_voices=not args.enroll)
    if args.enroll:
        return _enroll(args, model)
    rows = conversion.speakers(model)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'speaker':<12} {'gender':<8} {'accent':<16} {'median F0':>9}")
    for r in rows:
        print(f"{r['name']:<12} {r['gender'] or '-':<8} {r['accent'] or '-':<16} {r['f0_hz']:>6.0f} Hz")
    if model.config.voice == "vector":
        print(f"{len(rows)} speakers; voices are vectors: a file carries its speaker's, and --to-reference maps the "
              "references' own")
    else:
        bank = "yes" if model.voice_bank is not None else "no (vqspeech speakers --enroll CORPUS builds one)"
        print(f"{len(rows)} speakers; voice bank for --to-reference methods blend/ridge: {bank}")
    print(f"models in the package (--model NAME): {', '.join(checkpoint.shipped_models())}")
    return 0


def _enroll(args, model) -> int:
    """Build the voice bank from CORPUS/<speaker>/ audio of the model's speakers, and write it."""
    from vqspeech import checkpoint, speaker_encoder

    out = Path(args.voices) if args.voices else speaker_encoder.bank_path(checkpoint.resolve(args.model))
    if out.exists() and not args.force:
        raise ValueError(f"{out}: exists (use --force to overwrite)")
    bank = speaker_encoder.VoiceBank.enroll(model.speaker_names, Path(args.enroll), args.per_speaker, model.config.sample_rate)
    bank.save(out)
    print(f"wrote {out} ({len(bank.names)} speakers, up to {args.per_speaker} utterances each)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqspeech", description="Speech codec and voice conversion on VQ-VAE codes.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    parser.add_argument("--version", action="version", version=f"vqspeech {vqspeech.__version__}")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: the cores not already busy, at most 4; OMP_NUM_THREADS "
                             "if set; training configs may set train.threads)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="resample, trim and normalise a corpus, and write its manifest")
    p.add_argument("corpus", choices=["vctk", "vcc2016", "speechocean762", "folder"],
                   help="layout: vctk (0.92 or 0.80), vcc2016 (<spk>/1000NN.*), speechocean762 (audio/<spk>/*.flac + "
                        "speakers.tsv), folder (ROOT/<speaker>/*.wav|flac)")
    p.add_argument("--data", required=True, help="corpus root")
    p.add_argument("--out", required=True, help="output folder for prepared audio and manifest.csv")
    p.add_argument("--valid", type=int, default=None,
                   help="held-out utterances per training speaker (vcc2016: sentence ids; defaults: vctk 10, vcc2016 12, folder 10)")
    p.add_argument("--unseen", default=None, metavar="SPK,SPK",
                   help="speakers held out whole (defaults: fixed lists, corpora.VCTK_UNSEEN (8) and SPEECHOCEAN_UNSEEN (20); '' for none)")
    p.add_argument("--mic", default="mic1", choices=["mic1", "mic2"], help="VCTK 0.92 microphone")
    p.add_argument("--top-db", type=float, default=40.0, help="silence threshold for trimming, dB below the peak")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any file was skipped")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("combine", help="one training manifest from the manifests of several prepared corpora")
    p.add_argument("manifests", nargs="+", help="manifest.csv files of `vqspeech prepare`")
    p.add_argument("--out", required=True, help="folder for the combined manifest.csv and speakers.csv")
    p.set_defaults(func=cmd_combine)

    p = sub.add_parser("synth-corpus", help="synthesize a small multi-speaker corpus with flite, in the VCTK layout")
    p.add_argument("--out", required=True, help="corpus folder to write (read it with `prepare vctk`)")
    p.add_argument("--text", required=True, help="prompts: one sentence per line, or festvox ( id \"text\" ) lines")
    p.add_argument("--speakers", type=int, default=8, help="how many of the built-in flite speakers (at most 10)")
    p.add_argument("--per-speaker", type=int, default=20, help="prompts each speaker reads (the same ones for all)")
    p.add_argument("--flite", default="flite", help="flite binary")
    p.set_defaults(func=cmd_synth_corpus)

    p = sub.add_parser("train", help="train a VQ-VAE model")
    _training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-parallel", help="train the fast parallel decoder on a trained model: on its frozen codes, or "
                                             "with them (train.joint), or with a vector voice (model.voice=vector)")
    p.add_argument("--base-model", required=True, help="the model to start from: a VQ-VAE checkpoint, or a model with a "
                                                       "parallel decoder already (fine-tuning)")
    _training_options(p)
    p.set_defaults(func=cmd_train_parallel)

    p = sub.add_parser("train-wavenet", help="train the autoregressive WaveNet decoder alone, on the frozen codes, voice and "
                                            "parallel decoder of a model (model.decoder.parallel_input: it reads that "
                                            "decoder's rendering)")
    p.add_argument("--base-model", required=True, help="the model whose WaveNet is trained (a checkpoint or model file)")
    _training_options(p)
    p.set_defaults(func=cmd_train_wavenet)

    from vqspeech import cli_codec, cli_prior

    cli_prior.add_commands(sub, MODEL_HELP, _training_options)
    cli_codec.add_commands(sub, MODEL_HELP)

    p = sub.add_parser("speakers", help="list the model's speakers, or build its voice bank (--enroll)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--enroll", metavar="CORPUS", help="build the voice bank from CORPUS/<speaker>/ audio of the model's speakers")
    p.add_argument("--per-speaker", type=int, default=20, help="utterances per speaker for --enroll")
    p.add_argument("--voices", help="voice bank to read or write (default: MODEL.voices.npz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing voice bank")
    p.set_defaults(func=cmd_speakers)

    p = sub.add_parser("export", help="write a training checkpoint as a model file to use or ship (weights only, float16)")
    p.add_argument("checkpoint", help="checkpoint of `vqspeech train` or `vqspeech train-parallel`")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16, half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the browser demo: voice conversion and the codec (Gradio)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="longest recording accepted (default 20)")
    p.add_argument("--max-file-mb", type=float, default=10.0, help="largest upload accepted, in MB (default 10)")
    p.set_defaults(func=cmd_demo)
    return parser


def default_threads() -> int:
    """Threads for torch when nobody said: the cores the load average leaves free, at most 4 (our models are small:
    beyond that, threads wait on each other). torch's own default, every core, fights any busy process for them: a
    300 s decode took 28 s with it and 13 s with one thread beside a busy training run."""
    cores = os.cpu_count() or 1
    busy = int(os.getloadavg()[0] + 0.5) if hasattr(os, "getloadavg") else 0
    return max(1, min(4, cores - busy))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads is not None and args.threads < 1:
        print(f"vqspeech: error: --threads {args.threads}: give 1 or more", file=sys.stderr)
        return 2
    if args.threads or "OMP_NUM_THREADS" not in os.environ:
        threads = args.threads or default_threads()
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it loads: commands that never need it stay quick
        if "torch" in sys.modules:  # already loaded (library use of main, tests)
            sys.modules["torch"].set_num_threads(threads)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:  # our errors carry the file and the problem
        print(f"vqspeech: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vqspeech info x.vqs | head -3`: the reader left, which is not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush of stdout is quiet too
        return 0


if __name__ == "__main__":
    sys.exit(main())
