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
