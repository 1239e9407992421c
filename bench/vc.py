"""Voice conversion on the VCC 2016 held-out sentences: every source-target pair, converted and measured in
one run next to two peers (no conversion; a pitch shift toward the target's median F0).

    python bench/vc.py --model RUN/checkpoint-N.pt --data /work/shared/data/vcc2016/train --out bench/results
        [--limit N] [--decoder autoregressive|parallel] [--methods fit,blend,ridge]
        [--sources SF1 ...] [--targets TF1 ...] [--sentences 100158 ...]

Systems, per (source, target, held-out sentence):
  none         the source recording itself
  pitch-shift  the source shifted by 12 log2(F0_target / F0_source) semitones (librosa.effects.pitch_shift;
               medians from model.speaker_pitch, measured on the training data)
  vqspeech     convert(model, wav, target=T): T's table row and pitch range
  ref-METHOD   the target as an unseen voice: its row is left out of the table (and its centroid out of the
               voice bank), and the voice is found from --ref-utts of its training recordings (leave one
               speaker out), by reference_voice(method=METHOD)
Measures (vqspeech/eval): speaker identification by the nearest resemblyzer centroid of the 10 speakers
(centroids from --enrol training recordings each, none of them held out): share identified as the target /
the source; the same by the nearest real recording of the same sentence in mel-cepstral distance (no
speaker-embedding model involved); mel-cepstral distance (DTW) to the target's recording of the sentence;
pocketsphinx word agreement with the source; real-time factor (conversion seconds per audio second, one
CPU thread). Also, without the decoder: how near each method's vector lands to the left-out speaker's own
row (leave one speaker out over all 10). Writes vc.md, vc.csv and vc.png into --out.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vqspeech import audio, checkpoint, conversion, speaker_encoder  # noqa: E402
from vqspeech.data import corpora  # noqa: E402
from vqspeech.eval import mcd, speaker_id, words  # noqa: E402

SR = 16000


def files_of(data: Path, speaker: str, utterance: str) -> Path:
    found = [p for p in (data / speaker).glob(f"{utterance}.*") if p.suffix.lower() in audio.AUDIO_EXTENSIONS]
    if not found:
        raise FileNotFoundError(f"{data / speaker}/{utterance}: no such recording")
    return found[0]


class Corpus:
    """VCC 2016 recordings, loaded once each, with their mel-cepstra."""

    def __init__(self, root: Path):
        self.root = root
        items = corpora.vcc2016(root)
        self.held_out = sorted({it.utterance for it in items if it.split == "valid"})
        self.train = defaultdict(list)
        for it in sorted(items, key=lambda it: it.utterance):
            if it.split == "train":
                self.train[it.speaker].append(it.utterance)
        self._wav, self._cep = {}, {}

    def wav(self, speaker: str, utterance: str) -> np.ndarray:
        key = (speaker, utterance)
        if key not in self._wav:
            self._wav[key] = audio.load(files_of(self.root, speaker, utterance), SR)
        return self._wav[key]

    def cep(self, speaker: str, utterance: str) -> np.ndarray:
        key = (speaker, utterance)
        if key not in self._cep:
            self._cep[key] = mcd.mel_cepstrum(self.wav(speaker, utterance))
        return self._cep[key]


def vector_recovery(model, corpus: Corpus, refs: dict[str, list[np.ndarray]], bank, methods: list[str]) -> list[dict]:
    """Leave one speaker out: each method's vector for a speaker (its row excluded) against that row.
    Reports cosine similarity and the L2 distance relative to that of the mean of the other rows."""
    if not methods:  # and a vector-voice model has no table to recover
        return []
    table = model.speaker_embedding.weight.detach()
    out = []
    for method in methods:
        cos, rel = [], []
        for i, name in enumerate(model.speaker_names):
            voice = conversion.reference_voice(model, refs[name], method=method, bank=bank, exclude=(name,))
            others = torch.cat([table[:i], table[i + 1 :]]).mean(0)
            cos.append(float(torch.nn.functional.cosine_similarity(voice.vector, table[i], dim=0)))
            rel.append(float((voice.vector - table[i]).norm() / (others - table[i]).norm()))
        out.append({"method": method, "cosine": float(np.mean(cos)), "relative_l2": float(np.mean(rel))})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", type=Path, required=True, help="VCC 2016 training set root (ROOT/<speaker>/1000NN.*)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="vc", help="file name stem of the report")
    p.add_argument("--limit", type=int, default=0, help="held-out sentences per pair (0 = all 12)")
    p.add_argument("--sentences", nargs="+", help="these held-out sentence ids instead")
    p.add_argument("--sources", nargs="+", default=list(corpora.VCC2016_SOURCES))
    p.add_argument("--targets", nargs="+", default=list(corpora.VCC2016_TARGETS))
    p.add_argument("--decoder", choices=["autoregressive", "parallel"], default=None, help="default: the parallel one if the model has it")
    p.add_argument("--methods", default="fit,blend,ridge", help="unseen-voice methods to run (comma list; '' for none)")
    p.add_argument("--enrol", type=int, default=20, help="training recordings per speaker for the resemblyzer centroids")
    p.add_argument("--ref-utts", type=int, default=3, help="training recordings of the target as the unseen-voice reference")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in conversion.METHODS:
            raise SystemExit(f"--methods: unknown method {m!r} (choose from {', '.join(conversion.METHODS)})")

    model = checkpoint.load(args.model)
    args.decoder = args.decoder or model.default_decoder
    corpus = Corpus(args.data)
    speakers = list(corpora.VCC2016_SOURCES + corpora.VCC2016_TARGETS)
    missing = [s for s in speakers if s not in model.speaker_names]
    if missing:
        raise SystemExit(f"{args.model}: the model does not know VCC speaker(s) {', '.join(missing)}")
    sentences = args.sentences or corpus.held_out[: args.limit or None]
    bad = [s for s in sentences if s not in corpus.held_out]
    if bad:
        raise SystemExit(f"--sentences: {', '.join(bad)} are not held out (held out: {corpus.held_out[0]}..{corpus.held_out[-1]})")
    t0 = time.perf_counter()
    import librosa

    # Compile librosa's numba kernels before anything is timed (the first call takes seconds).
    noise = (0.01 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    librosa.effects.pitch_shift(noise, sr=SR, n_steps=1.0)
    mcd.mel_cepstrum(noise)

    # Resemblyzer centroids for identification, from the first --enrol training recordings of each speaker.
    # The voice bank for the blend/ridge methods is built from the same centroids: same embedding model.
    enrol = {s: [corpus.wav(s, u) for u in corpus.train[s][: args.enrol]] for s in speakers}
    bank = speaker_encoder.VoiceBank.build(speakers, enrol)  # the 10 VCC voices the judge chooses among

    def identify(wav: np.ndarray) -> str:
        return speaker_id.nearest(speaker_encoder.embed(wav), bank.names, bank.centroids)

    # Unseen-voice references: the last --ref-utts training recordings (never among the enrolment ones).
    refs = {s: [corpus.wav(s, u) for u in corpus.train[s][-args.ref_utts :]] for s in speakers}
    recovery = vector_recovery(model, corpus, refs, bank, methods)
    voices, voice_seconds = {}, defaultdict(list)
    for t in args.targets:
        for m in methods:
            start = time.perf_counter()
            voices[(t, m)] = conversion.reference_voice(model, refs[t], method=m, bank=bank, exclude=(t,))
            voice_seconds[m].append(time.perf_counter() - start)
    asr_cache: dict[tuple[str, str], list[str]] = {}

    rows = []
    systems = ["none", "pitch-shift", "vqspeech"] + [f"ref-{m}" for m in methods]
    n_total = len(args.sources) * len(args.targets) * len(sentences)
    for k, (s, t, u) in enumerate((s, t, u) for s in args.sources for t in args.targets for u in sentences):
        src = corpus.wav(s, u)
        if (s, u) not in asr_cache:
            asr_cache[(s, u)] = words.recognise(src)
        for system in systems:
            start = time.perf_counter()
            gen = torch.Generator().manual_seed(args.seed)
            if system == "none":
                y = src
            elif system == "pitch-shift":
                steps = 12 * (model.speaker_pitch(t)[0] - model.speaker_pitch(s)[0]) / math.log(2)
                y = librosa.effects.pitch_shift(src, sr=SR, n_steps=steps).astype(np.float32)
            elif system == "vqspeech":
                y = conversion.convert(model, src, target=t, decoder=args.decoder, generator=gen)
            else:  # the voice was found once per target, before (its time is reported apart)
                y = conversion.render(model, model.encode(src), voices[(t, system[4:])], decoder=args.decoder, generator=gen)
            seconds = time.perf_counter() - start
            cep = mcd.mel_cepstrum(y)
            by_mcd = {r: mcd.mcd(cep, corpus.cep(r, u)) for r in speakers}
            ident = identify(y)
            rows.append({
                "source": s, "target": t, "sentence": u, "system": system,
                "id_target": ident == t, "id_source": ident == s, "identified": ident,
                "mcdid_target": min(by_mcd, key=by_mcd.get) == t, "mcdid_source": min(by_mcd, key=by_mcd.get) == s,
                "mcd_target": by_mcd[t], "words": words.agreement(asr_cache[(s, u)], words.recognise(y)),
                "rtf": seconds / (len(src) / SR), "seconds": len(src) / SR,
            })
        print(f"[{k + 1}/{n_total}] {s}->{t} {u}: " + ", ".join(
            f"{r['system']} {r['mcd_target']:.2f} dB id {r['identified']}" for r in rows[-len(systems):]), flush=True)
    ref_seconds = sum(len(w) for w in refs[args.targets[0]]) / SR
    voice_cost = {m: (float(np.mean(v)), ref_seconds) for m, v in voice_seconds.items()}
    # The judge's ceiling: how often it names each target from the target's own recordings of these sentences.
    ceiling = {t: float(np.mean([identify(corpus.wav(t, u)) == t for u in sentences])) for t in args.targets}
    write_report(args, rows, systems, recovery, voice_cost, ceiling, sentences, time.perf_counter() - t0, model.config.voice)


def summarise(rows: list[dict], systems: list[str]) -> dict[str, dict]:
    out = {}
    for system in systems:
        r = [x for x in rows if x["system"] == system]
        mean = lambda key: float(np.nanmean([x[key] for x in r]))  # noqa: E731
        out[system] = {"n": len(r), "id_target": mean("id_target"), "id_source": mean("id_source"),
                       "mcdid_target": mean("mcdid_target"), "mcdid_source": mean("mcdid_source"),
                       "mcd": mean("mcd_target"), "mcd_sd": float(np.std([x["mcd_target"] for x in r])),
                       "words": mean("words"), "rtf": mean("rtf")}
    return out


def per_target(rows: list[dict], targets: list[str], ceiling: dict[str, float]) -> list[str]:
    """Markdown table: per target, the share of vqspeech conversions identified as it, who the rest were taken
    for, and the judge's ceiling (the target's own recordings identified as the target)."""
    lines = ["| target | vqspeech identified as target | taken instead for | the target's own recordings identified as it |",
             "|---|---|---|---|"]
    for t in targets:
        r = [x for x in rows if x["system"] == "vqspeech" and x["target"] == t]
        others = Counter(x["identified"] for x in r if x["identified"] != t)
        instead = ", ".join(f"{k} {v}" for k, v in others.most_common()) or "-"
        lines.append(f"| {t} | {np.mean([x['id_target'] for x in r]):.0%} of {len(r)} | {instead} | {ceiling[t]:.0%} |")
    return lines


def write_report(args, rows, systems, recovery, voice_cost, ceiling, sentences, wall, model_voice: str = "table") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{args.name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = summarise(rows, systems)
    ckpt = torch.load(args.model, map_location="cpu", weights_only=True)
    pairs = f"{len(args.sources)} x {len(args.targets)} pairs"
    lines = [
        "# Voice conversion, VCC 2016 held-out sentences",
        "",
        f"Model `{args.model}` (step {ckpt.get('step')}), decoder {args.decoder}; {pairs} "
        f"({' '.join(args.sources)} -> {' '.join(args.targets)}), sentences {' '.join(sentences)}; "
        f"{len(rows) // len(systems)} utterances per system; whole run {wall / 60:.1f} min on one CPU thread.",
        f"Command: `python bench/vc.py {' '.join(sys.argv[1:])}`",
        "",
        "| system | n | id as target | id as source | MCD-id as target | MCD-id as source | MCD to target (dB) | word agreement | RTF |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in systems:
        r = summary[s]
        lines.append(f"| {s} | {r['n']} | {r['id_target']:.0%} | {r['id_source']:.0%} | {r['mcdid_target']:.0%} | "
                     f"{r['mcdid_source']:.0%} | {r['mcd']:.2f} ± {r['mcd_sd']:.2f} | {r['words']:.2f} | {r['rtf']:.2f} |")
    vq, peers = summary["vqspeech"], [summary["none"], summary["pitch-shift"]]
    gain = min(p["mcd"] for p in peers) - vq["mcd"]
    lines += [
        "",
        f"Targets: at least 90 % identified as the target: vqspeech {vq['id_target']:.0%} "
        f"({'met' if vq['id_target'] >= 0.9 else 'not met'}); mel-cepstral gain over the better peer: {gain:+.2f} dB "
        f"({'a gain' if gain > 0 else 'no gain'}).",
        "",
        *per_target(rows, args.targets, ceiling),
        "",
        ("- *id*: nearest of the 10 speakers' resemblyzer centroids. The `vqspeech` system is conditioned on the learned "
         "table, independent of resemblyzer. " if model_voice == "table" else
         "- *id*: nearest of the 10 speakers' resemblyzer centroids. **This model (voice=vector) is conditioned on "
         "resemblyzer d-vectors** (the target's is its training recordings' mean), so the id columns grade it with its "
         "own teacher: read the MCD-id columns beside them. ") +
        "**`ref-blend` and `ref-ridge` are conditioned through the same resemblyzer "
        "model and centroids that identify them**, so their id columns flatter them; the MCD columns do not depend on it. "
        "`ref-fit` uses no speaker-embedding model.",
        "- *MCD-id*: the speaker whose real recording of the same sentence is nearest in mel-cepstral distance (no embedding model).",
        "- *MCD*: librosa mel-cepstra c1..c24 of 40 mel bands, DTW-aligned (vqspeech/eval/mcd.py): comparable within this "
        "table, not with SPTK-based MCD in papers. *word agreement*: 1 - word edit distance between pocketsphinx's reading of "
        "the output and of the source, over the source's words. *RTF*: conversion seconds per audio second (one thread; "
        "metrics excluded).",
        "- `ref-*`: the target is treated as unseen: its table row (and, for blend/ridge, its centroid) is left out, and its "
        f"voice is taken from {args.ref_utts} of its training recordings. With 9 remaining training voices, a blend can only "
        "land near voices the model knows.",
    ]
    if voice_cost:
        lines += ["", "Finding the unseen voice (once per target, not in the RTF above): " + "; ".join(
            f"{m} {sec:.1f} s for {ref:.1f} s of reference" for m, (sec, ref) in voice_cost.items()) + "."]
    if recovery:
        lines += ["", "Vector recovery, leave one speaker out over all 10 (no decoding): the method's vector for a speaker "
                  "whose row is hidden, against that row (relative L2: distance over the distance of the other rows' mean; "
                  "below 1 beats guessing the mean).", "", "| method | cosine to true row | relative L2 |", "|---|---|---|"]
        lines += [f"| {r['method']} | {r['cosine']:.3f} | {r['relative_l2']:.3f} |" for r in recovery]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = np.arange(len(systems))
    axes[0].bar(x, [summary[s]["mcd"] for s in systems], yerr=[summary[s]["mcd_sd"] for s in systems], color="tab:blue")
    axes[0].set_ylabel("MCD to the target's recording (dB)")
    width = 0.2
    for i, (key, label) in enumerate([("id_target", "id: target"), ("id_source", "id: source"),
                                      ("mcdid_target", "MCD-id: target"), ("mcdid_source", "MCD-id: source")]):
        axes[1].bar(x + (i - 1.5) * width, [summary[s][key] for s in systems], width, label=label)
    axes[1].axhline(0.9, color="gray", ls=":")
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("share of utterances")
    axes[1].legend(fontsize=8)
    axes[2].bar(x, [summary[s]["words"] for s in systems], color="tab:green")
    axes[2].set_ylim(0, 1)
    axes[2].set_ylabel("word agreement with the source")
    for ax in axes:
        ax.set_xticks(x, systems, rotation=30, ha="right")
    fig.suptitle(f"VCC 2016 held-out, {pairs}, {len(sentences)} sentence(s) each, {args.decoder} decoder")
    fig.tight_layout()
    fig.savefig(args.out / f"{args.name}.png", dpi=100)
    print(f"wrote {args.out / args.name}.md, .csv, .png")


if __name__ == "__main__":
    main()
