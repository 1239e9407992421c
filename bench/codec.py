"""Codec benchmark: vqspeech against codec2 (1600/2400/3200) and Opus 6k, same files, same run.

    python bench/codec.py --model M.pt --manifest data/vcc2016/manifest.csv [--split valid] [--limit 20]
                          [--decoders autoregressive,parallel] [--out bench/results] [--name codec]

For every utterance and system: the real bitrate from the bytes written (file and payload), PESQ wideband
and narrowband, STOI, voicing agreement, log-mel distance, speaker similarity (resemblyzer cosine between
original and decoded, when installed) and encode/decode real-time factors. Decoded audio is aligned to the
original (log-energy envelope cross-correlation) before the metrics that need alignment, for all systems alike.
Who is speaking, by two judges that choose among the split's speakers, each enrolled on those speakers' other
recordings of the split (never the scored ones): the nearest resemblyzer centroid, and an MFCC + LDA judge that
owes nothing to resemblyzer (vqspeech/eval/speaker_judge.py). With the manifest's speakers.csv, figures per
group (adult/child, female/male) too. Writes NAME.md (table), NAME.json (per-utterance figures) and NAME.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from collections import defaultdict
from datetime import date
import sys
from pathlib import Path

import numpy as np
import soxr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vqspeech and bench

from bench.common import held_out_rows  # noqa: E402
from vqspeech import audio, checkpoint  # noqa: E402
from vqspeech.codec import api, bitstream  # noqa: E402
from vqspeech.data.manifest import read_manifest, read_speakers  # noqa: E402
from vqspeech.eval import metrics, peers, speaker_id, speaker_judge  # noqa: E402


def speaker_judges(manifest: str, split: str, scored: list):
    """identify(wav) -> (resemblyzer's choice, mfcc-lda's choice) among the split's speakers, both enrolled on
    the split's recordings that are not scored; None when a speaker has no other recording or resemblyzer is absent."""
    from vqspeech import speaker_encoder

    skip = {r.path for r in scored}
    enrol: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in read_manifest(manifest, split):
        if r.path not in skip:
            enrol[r.speaker].append(audio.load(r.path))
    if not speaker_encoder.available() or len(enrol) < 2 or any(r.speaker not in enrol for r in scored):
        return None
    names = sorted(enrol)
    centroids = np.stack([speaker_encoder.embed_speaker(enrol[n]) for n in names])
    judge = speaker_judge.SpeakerJudge.fit(dict(enrol))
    return lambda wav: (speaker_id.nearest(speaker_encoder.embed(wav), names, centroids), judge.identify(wav))


def speaker_groups(manifest: str) -> dict[str, str]:
    """speaker -> "adult female" etc. where speakers.csv says (region adult/child, gender F/M); else {}."""
    known = read_speakers(Path(manifest).parent / "speakers.csv")
    return {s: f"{k.region} {'female' if k.gender == 'F' else 'male'}" for s, k in known.items()
            if k.region in ("adult", "child") and k.gender in ("F", "M")}


def speaker_similarity_fn():
    """Cosine similarity of resemblyzer d-vectors (vqspeech.speaker_encoder), or None when it is not installed."""
    from vqspeech import speaker_encoder

    if not speaker_encoder.available():
        return None

    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(speaker_encoder.embed(a), speaker_encoder.embed(b)))  # unit vectors

    return similarity


def score(ref: np.ndarray, dec: np.ndarray, similarity, identify=None, speaker: str = "") -> dict[str, float]:
    aligned = metrics.align(ref, dec)
    out = {"pesq_wb": metrics.pesq(ref, dec, 16000, "wb"),
           "pesq_nb": metrics.pesq(soxr.resample(ref, 16000, 8000), soxr.resample(dec, 16000, 8000), 8000, "nb"),
           "stoi": metrics.stoi(ref, aligned), "mel_distance": metrics.mel_distance(ref, aligned),
           "voicing_agreement": metrics.voicing(ref, aligned)["voicing_agreement"]}
    if similarity:
        out["speaker_similarity"] = similarity(ref, dec)
    if identify:
        by_resemblyzer, by_mfcc = identify(dec)
        out["id_resemblyzer"], out["id_mfcc"] = float(by_resemblyzer == speaker), float(by_mfcc == speaker)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", default="valid")
    p.add_argument("--limit", type=int, default=20, help="utterances (spread over speakers)")
    p.add_argument("--decoders", default="autoregressive,parallel")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peers", default=None, help="comma list of peer codecs to run (default: all; '' for none)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default="codec")
    p.add_argument("--refine", type=int, nargs="*", default=[], metavar="STEPS",
                   help="also encode with analysis by synthesis (models/refine.py), STEPS per window: systems "
                        "vqspeech-parallel-refineSTEPS (parallel decoder)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model = checkpoint.load(args.model)  # with its voice bank, as the CLI loads it
    decoders = [d for d in args.decoders.split(",") if d == "autoregressive" or model.parallel is not None]
    rows = held_out_rows(args.manifest, args.split, args.limit)
    similarity = speaker_similarity_fn()
    identify = speaker_judges(args.manifest, args.split, rows)
    results: dict[str, list[dict]] = defaultdict(list)
    voices: list[tuple[str, str | None]] = []  # (the recording's speaker, the voice the encoder recorded)
    for i, row in enumerate(rows):
        ref = audio.load(row.path)
        seconds = len(ref) / 16000
        print(f"[{i + 1}/{len(rows)}] {row.speaker}/{row.utterance} ({seconds:.1f} s)", flush=True)
        t = time.perf_counter()
        data = api.encode_audio(model, ref, speaker=api.AUTO_SPEAKER)  # what `vqspeech encode` does by default
        enc_time = time.perf_counter() - t
        parsed = bitstream.read(data)  # not unpack: range-coded codes need the prior, and only sizes are wanted here
        voices.append((row.speaker, parsed.header.speaker))
        # The bytes the codes and pitch take: the coder's words if range-coded, else the packed payload.
        payload_bits = 8 * (parsed.words.nbytes if parsed.words is not None else parsed.header.payload_bytes)
        for decoder in decoders:
            t = time.perf_counter()
            dec, _ = api.decode_bytes(model, data, decoder=decoder, seed=i)
            dec_time = time.perf_counter() - t
            results[f"vqspeech-{decoder}"].append({
                "utterance": f"{row.speaker}/{row.utterance}", "file_bps": len(data) * 8 / seconds,
                "payload_bps": payload_bits / seconds, "encode_rtf": seconds / enc_time, "decode_rtf": seconds / dec_time,
                **score(ref, dec, similarity, identify, row.speaker)})
        for steps in args.refine:
            t = time.perf_counter()
            refined = api.encode_audio(model, ref, speaker=api.AUTO_SPEAKER, refine_steps=steps)
            enc_time = time.perf_counter() - t
            words = bitstream.read(refined).words
            t = time.perf_counter()
            dec, _ = api.decode_bytes(model, refined, decoder="parallel", seed=i)
            dec_time = time.perf_counter() - t
            results[f"vqspeech-parallel-refine{steps}"].append({
                "utterance": f"{row.speaker}/{row.utterance}", "file_bps": len(refined) * 8 / seconds,
                "payload_bps": 8 * (words.nbytes if words is not None else bitstream.read(refined).header.payload_bytes) / seconds,
                "encode_rtf": seconds / enc_time, "decode_rtf": seconds / dec_time,
                **score(ref, dec, similarity, identify, row.speaker)})
        for peer in peers.default_peers():
            if not peer.available() or (args.peers is not None and peer.name not in args.peers.split(",")):
                continue
            t = time.perf_counter()
            dec, bits = peer.run(ref)
            elapsed = time.perf_counter() - t
            results[peer.name].append({"utterance": f"{row.speaker}/{row.utterance}", "file_bps": bits / seconds,
                                       "payload_bps": getattr(peer, "kbps", 0) * 1000 or bits / seconds,
                                       "codec_rtf": seconds / elapsed, **score(ref, dec, similarity, identify, row.speaker)})
    write_report(args, results, model, voices)


def voice_note(voices: list[tuple[str, str | None]], model) -> str:
    """Which voice the encoder recorded (`--speaker auto`: the nearest training voice), against the truth."""
    known = [(true, got) for true, got in voices if true in model.speaker_names]
    note = ("Each file is encoded as `vqspeech encode` does by default: it records the nearest training voice "
            "(`--speaker auto`; by the voice bank's resemblyzer centroids when the model has one), and decoding "
            "renders that voice.")
    if known:
        note += f" It picked the recording's own speaker for {sum(t == g for t, g in known)} of {len(known)} utterances."
    unseen = sorted({t for t, _ in voices if t not in model.speaker_names})
    for speaker in unseen:
        picks = [g or "none" for t, g in voices if t == speaker]
        note += f" {speaker} (unseen) -> {', '.join(sorted(set(picks), key=picks.index))}."
    return note


def paired_lines(results: dict[str, list[dict]], ours: list[str]) -> list[str]:
    """vqspeech minus codec2-2400 on the same utterances: mean ± standard error, and how often vqspeech is higher."""
    base = results.get("codec2-2400")
    if not base:
        return []
    out = ["", "Paired with codec2-2400 on the same utterances (mean difference ± standard error; utterances better):", ""]
    for name in ours:
        parts = []
        for c in ("pesq_wb", "stoi", "speaker_similarity"):
            if c not in base[0]:
                continue
            d = np.array([a[c] - b[c] for a, b in zip(results[name], base)], np.float64)
            d = d[np.isfinite(d)]
            parts.append(f"{c} {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} ({(d > 0).sum()} of {len(d)})")
        out.append(f"- {name}: " + "; ".join(parts))
    return out


def write_report(args, results: dict[str, list[dict]], model, voices: list[tuple[str, str | None]]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    columns = ["file_bps", "payload_bps", "pesq_wb", "pesq_nb", "stoi", "voicing_agreement", "mel_distance", "speaker_similarity",
               "id_resemblyzer", "id_mfcc", "encode_rtf", "decode_rtf", "codec_rtf"]
    present = [c for c in columns if any(c in r for rs in results.values() for r in rs)]
    means = {name: {c: float(np.nanmean([r[c] for r in rs if c in r])) if any(c in r for r in rs) else None for c in present}
             for name, rs in results.items()}
    lines = [f"# Codec benchmark: {args.name}", "",
             f"{date.today()}, {platform.processor() or platform.machine()}, {args.threads} threads; model `{args.model}`; "
             f"{len(next(iter(results.values())))} utterances from `{args.manifest}` (split {args.split}).", "",
             f"Command: `python bench/codec.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}`", "",
             "Means over utterances. RTF = audio seconds per wall second (higher is faster). file_bps counts every byte written "
             "(headers, container); payload_bps the codes and pitch only (Opus: its nominal rate). STOI, voicing and mel "
             "distance after envelope alignment; PESQ aligns itself. Speaker similarity: resemblyzer cosine, original vs decoded. "
             "id_resemblyzer / id_mfcc: share of decoded utterances identified as their own speaker among the split's "
             "speakers, by the nearest resemblyzer centroid / by the MFCC + LDA judge (both enrolled on the split's other "
             "recordings).", "",
             voice_note(voices, model), "",
             "| system | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for name, m in means.items():
        lines.append(f"| {name} | " + " | ".join("" if m[c] is None else f"{m[c]:.3g}" for c in present) + " |")
    ours = [n for n in means if n.startswith("vqspeech")]
    lines += paired_lines(results, ours)
    groups = speaker_groups(args.manifest)
    if groups:
        lines += ["", "Per group of speakers (means):", "", "| group | system | n | PESQ-WB | STOI | speaker similarity | id_resemblyzer | id_mfcc |",
                  "|---|---|---|---|---|---|---|---|"]
        for group in sorted(set(groups.values())):
            for name in [*ours, "codec2-2400", "opus-6k"]:
                rs = [r for r in results.get(name, []) if groups.get(r["utterance"].split("/")[0]) == group]
                if rs:
                    m = lambda c: f"{np.nanmean([r[c] for r in rs]):.3g}" if c in rs[0] else ""  # noqa: E731
                    lines.append(f"| {group} | {name} | {len(rs)} | {m('pesq_wb')} | {m('stoi')} | {m('speaker_similarity')} | "
                                 f"{m('id_resemblyzer')} | {m('id_mfcc')} |")
    if "codec2-2400" in means:
        lines += ["", "Ratios to codec2-2400 (same utterances):", ""]
        for n in ours:
            lines.append(f"- {n}: PESQ-WB x{means[n]['pesq_wb'] / means['codec2-2400']['pesq_wb']:.2f}, "
                         f"STOI x{means[n]['stoi'] / means['codec2-2400']['stoi']:.2f}, "
                         f"bitrate (file) x{means[n]['file_bps'] / means['codec2-2400']['file_bps']:.2f}")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        names = list(means)
        for ax, metric in zip(axes, ["pesq_wb", "stoi", "file_bps"]):
            ax.bar(names, [means[n][metric] or 0 for n in names], color=["C1" if n.startswith("vqspeech") else "C0" for n in names])
            ax.set_title(metric)
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(args.out / f"{args.name}.png", dpi=90)
    except ImportError:
        pass
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
