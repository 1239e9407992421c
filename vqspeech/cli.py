"""The `vqspeech` command line: parses arguments, checks paths, and calls the library. No logic here."""

from __future__ import annotations

import argparse
import logging
import sys

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

    unseen = tuple(s for s in args.unseen.split(",") if s) if args.unseen is not None else None
    items, speakers = corpora.read_corpus(args.corpus, args.data, valid=args.valid, unseen=unseen, mic=args.mic)
    manifest, problems = prepare(items, args.out, top_db=args.top_db, speakers=speakers, jobs=args.jobs)
    print(f"wrote {manifest} ({len(items) - len(problems)} utterances, {len(problems)} skipped)")
    return 1 if problems and args.strict else 0


def cmd_synth_corpus(args) -> int:
    from vqspeech.data import synth

    made, kept = synth.synthesize_corpus(args.out, synth.read_prompts(args.text), args.speakers, args.per_speaker, args.flite)
    print(f"wrote {args.out} ({made + kept} utterances: {made} made now, {kept} already there)")
    return 0


def cmd_train(args) -> int:
    from vqspeech.config import load_config
    from vqspeech.train.loop import train

    config = load_config(*args.config, overrides=_parse_overrides(args.set))
    run_dir = train(config, resume=args.resume)
    print(f"done: {run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqspeech", description="Speech codec and voice conversion on VQ-VAE codes.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="resample, trim and normalise a corpus, and write its manifest")
    p.add_argument("corpus", choices=["vctk", "vcc2016", "folder"],
                   help="layout: vctk (0.92 or 0.80), vcc2016 (<spk>/1000NN.*), folder (ROOT/<speaker>/*.wav|flac)")
    p.add_argument("--data", required=True, help="corpus root")
    p.add_argument("--out", required=True, help="output folder for prepared audio and manifest.csv")
    p.add_argument("--valid", type=int, default=None,
                   help="held-out utterances per training speaker (vcc2016: sentence ids; defaults: vctk 10, vcc2016 12, folder 10)")
    p.add_argument("--unseen", default=None, metavar="SPK,SPK",
                   help="speakers held out whole (vctk default: a fixed list of 8, see corpora.VCTK_UNSEEN; '' for none)")
    p.add_argument("--mic", default="mic1", choices=["mic1", "mic2"], help="VCTK 0.92 microphone")
    p.add_argument("--top-db", type=float, default=40.0, help="silence threshold for trimming, dB below the peak")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any file was skipped")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("synth-corpus", help="synthesize a small multi-speaker corpus with flite, in the VCTK layout")
    p.add_argument("--out", required=True, help="corpus folder to write (read it with `prepare vctk`)")
    p.add_argument("--text", required=True, help="prompts: one sentence per line, or festvox ( id \"text\" ) lines")
    p.add_argument("--speakers", type=int, default=8, help="how many of the built-in flite speakers (at most 10)")
    p.add_argument("--per-speaker", type=int, default=20, help="prompts each speaker reads (the same ones for all)")
    p.add_argument("--flite", default="flite", help="flite binary")
    p.set_defaults(func=cmd_synth_corpus)

    p = sub.add_parser("train", help="train a VQ-VAE model")
    p.add_argument("--config", action="append", default=[], help="YAML config; repeat to overlay")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run_dir")
    p.set_defaults(func=cmd_train)
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
