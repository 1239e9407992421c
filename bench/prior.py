"""The prior as an entropy model: bits per code on held-out speech against unigram and bigram tables of the same
codes, real .vqs bitrates with and without it, and its coding speed.

    python bench/prior.py --model vqspeech/pretrained/default.pt --codes CODES.npz --prior PRIOR.pt \
        --manifest data/combined/manifest.csv [--baseline OTHER_PRIOR.pt] --out bench/results --name prior-default

CODES.npz is the code cache of train-prior (vqspeech/data/codes.py) for the same model; the tables are fitted on
its "train" split and scored, like the prior, on each held-out set. With --baseline, another prior of the same
model is scored on the same utterances and the two are paired utterance by utterance. The issue's own floor protocol (VCC 2016 files
only, 80 % to fit, 20 % held out, every 5th file) is reported too. Bitrates are of real files written by
api.encode_audio (v4: range-coded under the prior; v3: packed), header and checksum included.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import held_out_rows, machine_note, write_atomic  # noqa: E402
from vqspeech import audio, checkpoint  # noqa: E402
from vqspeech.codec import api, bitstream, entropy  # noqa: E402
from vqspeech.data.codes import CodeCorpus, TokenLayout  # noqa: E402
from vqspeech.train.prior_loop import heldout_sets  # noqa: E402

SMOOTHING = 0.1  # add-alpha counts of the tables; alpha 0.1 is near the best of {0.01, 0.1, 1} on our codes


def kinds(tokens: np.ndarray, layout: TokenLayout) -> tuple[np.ndarray, np.ndarray]:
    """tokens [N] -> (codes in stream order, pitch symbols in stream order)."""
    is_pitch = layout.is_pitch(np.arange(len(tokens)))
    return tokens[~is_pitch], tokens[is_pitch] - layout.codebook_size


def table_bits(train: list[np.ndarray], test: list[np.ndarray], size: int) -> tuple[float, float]:
    """Unigram and bigram (previous symbol of the same kind) bits per symbol of `test` under tables fitted on `train`."""
    uni = np.full(size, SMOOTHING)
    bi = np.full((size + 1, size), SMOOTHING)  # row `size`: a stream's first symbol
    for s in train:
        np.add.at(uni, s, 1)
        np.add.at(bi, (np.concatenate([[size], s[:-1]]), s), 1)
    uni_lp = np.log2(uni / uni.sum())
    bi_lp = np.log2(bi / bi.sum(1, keepdims=True))
    n = sum(len(s) for s in test)
    u = -sum(uni_lp[s].sum() for s in test) / n
    b = -sum(bi_lp[np.concatenate([[size], s[:-1]]), s].sum() for s in test) / n
    return float(u), float(b)


def run_lengths(streams: list[np.ndarray]) -> float:
    runs = [np.diff(np.flatnonzero(np.diff(np.concatenate([[-1], s, [-1]])) != 0)) for s in streams if len(s)]
    return float(np.concatenate(runs).mean())


def prior_bits(prior, part: CodeCorpus, layout: TokenLayout) -> tuple[float, float, np.ndarray]:
    """-> (bits per code, bits per pitch symbol, bits per code of each utterance) under the exact prior."""
    code_bits, pitch_bits, per_utt = 0.0, 0.0, []
    n_codes = n_pitch = 0
    for t, voice in zip(part.tokens, part.voices):
        bits = entropy.token_bits(prior, t, voice)
        is_pitch = layout.is_pitch(np.arange(len(t)))
        code_bits += bits[~is_pitch].sum()
        pitch_bits += bits[is_pitch].sum()
        n_codes += (~is_pitch).sum()
        n_pitch += is_pitch.sum()
        per_utt.append(bits[~is_pitch].mean())
    return code_bits / n_codes, (pitch_bits / n_pitch if n_pitch else 0.0), np.array(per_utt)


def file_rates(model, rows: list, prior_path: str) -> dict:
    """Real files of `rows`, v4 and v3: payload and whole-file bits per second, and coding speed."""
    out = {"v4_payload": 0, "v4_file": 0, "v3_payload": 0, "v3_file": 0, "seconds": 0.0, "encode_s": 0.0, "decode_s": 0.0,
           "prior_decode_s": 0.0, "files": 0, "lossless": True}
    for row in rows:
        wav = audio.load(row.path, model.config.sample_rate)
        plain = api.encode_audio(model, wav, speaker=api.AUTO_SPEAKER, prior=False)
        t = time.perf_counter()
        coded = api.encode_audio(model, wav, speaker=api.AUTO_SPEAKER, prior=prior_path)
        out["encode_s"] += time.perf_counter() - t
        p3, p4 = bitstream.read(plain), bitstream.read(coded)
        t = time.perf_counter()
        codes, pitch = api.symbols(model, p4, prior_path)
        out["prior_decode_s"] += time.perf_counter() - t
        out["lossless"] &= bool(np.array_equal(codes, p3.codes) and np.array_equal(pitch, p3.pitch))
        t = time.perf_counter()
        api.decode_bytes(model, coded, prior_path=prior_path)
        out["decode_s"] += time.perf_counter() - t
        out["v3_payload"] += p3.header.payload_bytes * 8
        out["v3_file"] += len(plain) * 8
        out["v4_payload"] += p4.words.nbytes * 8
        out["v4_file"] += len(coded) * 8
        out["seconds"] += p3.header.duration
        out["files"] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--codes", required=True)
    ap.add_argument("--prior", required=True)
    ap.add_argument("--manifest", required=True, help="the manifest the codes came from (for the file bitrates)")
    ap.add_argument("--files", type=int, default=20, help="held-out files per set for the real bitrates and speed")
    ap.add_argument("--baseline", help="another prior of the model, paired with --prior on the same utterances")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="prior")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model = checkpoint.load(args.model)
    prior = entropy.load_prior(args.prior, model)
    baseline = entropy.load_prior(args.baseline, model) if args.baseline else None
    corpus = CodeCorpus.load(Path(args.codes))
    layout = TokenLayout.of(model.config)
    train = corpus.select(lambda i: corpus.splits[i] == "train")
    train_codes, train_pitch = zip(*(kinds(t, layout) for t in train.tokens))
    rows = []
    for name, part in heldout_sets(corpus).items():
        codes, pitch = zip(*(kinds(t, layout) for t in part.tokens))
        uni, bi = table_bits(list(train_codes), list(codes), layout.codebook_size)
        _, pitch_bi = table_bits(list(train_pitch), list(pitch), layout.pitch_levels)
        pc, pp, per_utt = prior_bits(prior, part, layout)
        rows.append(dict(set=name, utterances=len(part.tokens), unigram=uni, bigram=bi, prior=pc,
                         saving=1 - pc / bi, per_utt_sd=float(per_utt.std()), pitch_bigram=pitch_bi, pitch_prior=pp,
                         run_length=run_lengths(list(codes))))
        if baseline is not None:
            bc, bp, base_utt = prior_bits(baseline, part, layout)
            d = per_utt - base_utt
            rows[-1].update(baseline=bc, baseline_pitch=bp, paired=float(d.mean()), paired_se=float(d.std(ddof=1) / math.sqrt(len(d))),
                            lower=int((d < 0).sum()))
    # The floor protocol: VCC 2016 files only, 80 % fit / 20 % held out.
    vcc = [i for i, c in enumerate(corpus.corpora) if c == "vcc2016"]
    held = set(vcc[::5])
    fit_codes = [kinds(corpus.tokens[i], layout)[0] for i in vcc if i not in held]
    held_codes = [kinds(corpus.tokens[i], layout)[0] for i in sorted(held)]
    floor = table_bits(fit_codes, held_codes, layout.codebook_size) if vcc else (math.nan, math.nan)
    sets = {"valid": "valid", "unseen": "unseen"}
    rates = {}
    for label, split in sets.items():
        chosen = held_out_rows(args.manifest, split, args.files)
        if chosen:
            rates[label] = file_rates(model, chosen, args.prior)
    report(args, model, prior, rows, floor, rates, time.time() - started)


def report(args, model, prior, rows, floor, rates, elapsed) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# The prior as the entropy model of the bitstream: `{args.name}`", "",
             f"Model `{args.model or checkpoint.default_model_path()}`, prior `{args.prior}` (id {prior.id}, "
             f"{prior.info.get('steps')} steps, {prior.info.get('cpu_seconds', 0) / 3600:.2f} CPU-hours). "
             f"Run took {elapsed / 60:.1f} min on one thread; {machine_note()}.",
             f"Command: `python bench/prior.py --model {args.model} --codes {args.codes} --prior {args.prior} "
             f"--manifest {args.manifest} --files {args.files}{f' --baseline {args.baseline}' if args.baseline else ''} "
             f"--name {args.name}`", "",
             "Bits per code on held-out streams (tables fitted on the training split, add-0.1 smoothing; the prior is "
             "its exact integer twin, what the coder uses). saving: 1 - prior / bigram.", "",
             "| set | utterances | unigram | bigram | prior | saving vs bigram | sd of prior over utterances | mean run length | pitch: bigram | pitch: prior |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['utterances']} | {r['unigram']:.2f} | {r['bigram']:.2f} | **{r['prior']:.2f}** | "
                     f"{100 * r['saving']:.0f} % | {r['per_utt_sd']:.2f} | {r['run_length']:.2f} | {r['pitch_bigram']:.2f} | {r['pitch_prior']:.2f} |")
    if any("paired" in r for r in rows):
        lines += ["", f"Paired with the baseline prior `{args.baseline}` on the same utterances (bits per code of each "
                  "utterance, prior minus baseline; mean ± standard error):", "",
                  "| set | baseline | prior | paired difference | prior lower on | pitch: baseline | pitch: prior |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['set']} | {r['baseline']:.3f} | {r['prior']:.3f} | {r['paired']:+.3f} ± {r['paired_se']:.3f} | "
                         f"{r['lower']} of {r['utterances']} | {r['baseline_pitch']:.2f} | {r['pitch_prior']:.2f} |")
    lines += ["", f"The issue's floor protocol (VCC 2016 files only, every 5th held out): unigram {floor[0]:.2f}, "
              f"bigram {floor[1]:.2f} bits/code.", "",
              "Real files (api.encode_audio, speaker auto; header, voice and checksum included):", "",
              "| held-out set | files | audio s | v3 payload kbit/s | v3 file kbit/s | v4 payload kbit/s | v4 file kbit/s | "
              "lossless | encode RTF (whole) | prior decode RTF | decode RTF (whole) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rates.items():
        s = r["seconds"]
        lines.append(f"| {label} | {r['files']} | {s:.1f} | {r['v3_payload'] / s / 1000:.3f} | {r['v3_file'] / s / 1000:.3f} | "
                     f"**{r['v4_payload'] / s / 1000:.3f}** | **{r['v4_file'] / s / 1000:.3f}** | {r['lossless']} | "
                     f"{r['encode_s'] / s:.3f} | {r['prior_decode_s'] / s:.3f} | {r['decode_s'] / s:.3f} |")
    lines += ["", "Peers at fixed rates: codec2 2400 bit/s and 1600 bit/s (their quality against ours: the codec reports, "
              "bench/results/codec-*.md; range coding does not change our decoded audio, which is bit-identical).",
              "RTF: seconds of work per second of audio, one thread (below 0.05 is more than 20x faster than real time)."]
    write_atomic(out / f"{args.name}.md", "\n".join(lines) + "\n")
    write_atomic(out / f"{args.name}.json", json.dumps({"rows": rows, "floor": floor, "rates": rates}, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
