"""Speech from the prior against real speech: what `vqspeech sample` makes, measured.

    python bench/prior_samples.py --model vqspeech/pretrained/default.pt --prior PRIOR.pt \
        --manifest data/combined/manifest.csv --per-speaker 3 --seconds 4 --out bench/results --name prior-samples

For each training speaker of the model found in the manifest's valid split: `per_speaker` samples of `seconds`
from the prior conditioned on that speaker (temperature 1 and 0.8), beside the same number of that speaker's
held-out recordings (real), their resyntheses through the codec (codec: the decoder's own ceiling), and those
recordings' codes and pitch symbols shuffled in time (the floor: each code's frequency kept, the sequence lost). Measured
on each: share of voiced frames (Praat pitch), identified as the conditioning speaker among the model's speakers by
resemblyzer (nearest voice-bank centroid) and by the MFCC judge (fitted on the speakers' training recordings, no
embedding model), code statistics (unigram entropy, conditional bigram entropy, mean run length; from the
tokens for samples, from the encoding for real speech), and words per second that pocketsphinx finds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_note, write_atomic  # noqa: E402
from vqspeech import audio, checkpoint, features, speaker_encoder  # noqa: E402
from vqspeech.codec import api, bitstream, entropy  # noqa: E402
from vqspeech.data.codes import TokenLayout, split_tokens  # noqa: E402
from vqspeech.data.manifest import read_manifest  # noqa: E402
from vqspeech.eval import words  # noqa: E402
from vqspeech.eval.speaker_judge import SpeakerJudge  # noqa: E402
from vqspeech.models.vqvae import Encoded  # noqa: E402
from vqspeech.sample import sample_tokens  # noqa: E402


def code_stats(codes: np.ndarray, K: int) -> dict:
    p = np.bincount(codes, minlength=K) / len(codes)
    unigram = -(p[p > 0] * np.log2(p[p > 0])).sum()
    pairs = np.bincount(codes[:-1] * K + codes[1:], minlength=K * K).reshape(K, K)
    joint = pairs / pairs.sum()
    row = joint.sum(1, keepdims=True)
    nz = joint > 0
    conditional = -(joint[nz] * np.log2((joint / np.maximum(row, 1e-300))[nz])).sum()
    changes = np.flatnonzero(np.diff(codes)) + 1
    runs = np.diff(np.concatenate([[0], changes, [len(codes)]]))
    return {"unigram_bits": float(unigram), "bigram_bits": float(conditional), "run_length": float(runs.mean())}


def measure(wav: np.ndarray, codes: np.ndarray, target: str, bank, judge, K: int) -> dict:
    f0 = features.extract_pitch(wav, 256).f0
    d = speaker_encoder.embed(wav)
    return {"voiced": float((f0 > 0).mean()), "resemblyzer": bank.names[int(np.argmax(bank.centroids @ d))] == target,
            "mfcc": judge.identify(wav) == target, "words_per_s": len(words.recognise(wav)) / (len(wav) / 16000),
            **code_stats(codes, K)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--prior", default=None)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--per-speaker", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--speakers", type=int, default=6, help="at most this many of the model's speakers")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="prior-samples")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model = checkpoint.load(args.model)
    prior = entropy.prior_for(model, args.prior)
    layout = TokenLayout.of(model.config)
    K = layout.codebook_size
    rows = read_manifest(args.manifest)
    names = [n for n in model.speaker_names if any(r.speaker == n and r.split == "valid" for r in rows)][: args.speakers]
    train_rec = {n: [audio.load(r.path) for r in rows if r.speaker == n and r.split == "train"][:8] for n in model.speaker_names}
    train_rec = {n: v for n, v in train_rec.items() if v}
    judge = SpeakerJudge.fit(train_rec)
    bank = model.voice_bank or speaker_encoder.VoiceBank.build(list(train_rec), train_rec)
    results = {"real": [], "codec": [], "shuffled codes": [], "prior T=1": [], "prior T=0.8": []}
    n_frames = round(args.seconds * model.config.sample_rate / model.config.pitch_hop)
    for name in names:
        index = model.speaker_index(name)
        with torch.no_grad():
            voice = model.speaker_voice(torch.tensor([index]))[0].float().numpy()
        mean, std = model.speaker_pitch(index)
        for r in [r for r in rows if r.speaker == name and r.split == "valid"][: args.per_speaker]:
            wav = audio.load(r.path)
            data = api.encode_audio(model, wav, speaker=name, prior=False)
            _, codes, _ = bitstream.unpack(data)
            results["real"].append(measure(wav, codes, name, bank, judge, K))
            results["codec"].append(measure(api.decode_bytes(model, data)[0], codes, name, bank, judge, K))
            # The floor: the same codes and pitch symbols in random order (their unigram kept, their sequence lost).
            header, _, pitch = bitstream.unpack(data)
            rng = np.random.default_rng(len(results["shuffled codes"]))
            shuffled, pitch_shuffled = rng.permutation(codes), rng.permutation(pitch)
            enc = Encoded(torch.from_numpy(shuffled), torch.from_numpy(pitch_shuffled), header.lf0_mean, header.lf0_std,
                          header.n_samples, voice=torch.from_numpy(voice))
            results["shuffled codes"].append(measure(model.decode(enc, index), shuffled, name, bank, judge, K))
        for label, temperature in (("prior T=1", 1.0), ("prior T=0.8", 0.8)):
            for seed in range(args.per_speaker):
                tokens = sample_tokens(prior, voice, n_frames * layout.period, None, temperature, 0, seed)
                codes, pitch = split_tokens(tokens, layout)
                enc = Encoded(torch.from_numpy(codes), torch.from_numpy(pitch), mean, std, len(codes) * model.config.hop,
                              voice=torch.from_numpy(voice))
                wav = model.decode(enc, index, generator=torch.Generator().manual_seed(seed))
                if seed == 0 and name == names[0]:
                    audio.save(Path(args.out) / f"{args.name}-{name}-T{temperature:g}.wav", wav)
                results[label].append(measure(wav, codes, name, bank, judge, K))
    report(args, model, prior, names, results, time.time() - started)


def report(args, model, prior, names, results, elapsed) -> None:
    lines = [f"# Speech sampled from the prior: `{args.name}`", "",
             f"Model `{args.model or checkpoint.default_model_path()}`, prior {prior.id} ({prior.path}); speakers "
             f"{', '.join(names)}; {args.per_speaker} clips per speaker and system, samples of {args.seconds:g} s. "
             f"Run took {elapsed / 60:.1f} min; {machine_note()}.",
             f"Command: `python bench/prior_samples.py --model {args.model} --prior {args.prior} --manifest {args.manifest} "
             f"--per-speaker {args.per_speaker} --seconds {args.seconds:g} --name {args.name}`", "",
             "| system | clips | voiced share | id as the speaker (resemblyzer) | id as the speaker (mfcc judge) | "
             "words/s (pocketsphinx) | code unigram bits | code bigram bits | code run length |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, rs in results.items():
        if not rs:
            continue
        m = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        lines.append(f"| {label} | {len(rs)} | {m['voiced']:.2f} | {100 * m['resemblyzer']:.0f} % | {100 * m['mfcc']:.0f} % | "
                     f"{m['words_per_s']:.2f} | {m['unigram_bits']:.2f} | {m['bigram_bits']:.2f} | {m['run_length']:.2f} |")
    lines += ["", f"Chance for the speaker columns: {100 / len(model.speaker_names):.0f} % ({len(model.speaker_names)} speakers). "
              "Code entropies are plug-in estimates per clip (a 4 s clip has ~1000 codes, so they sit below the corpus "
              "figures of bench/results/prior-*.md), comparable between rows.",
              f"Listen: `{args.name}-{names[0]}-T1.wav` and `-T0.8.wav` beside this report."]
    out = Path(args.out)
    write_atomic(out / f"{args.name}.md", "\n".join(lines) + "\n")
    write_atomic(out / f"{args.name}.json", json.dumps(results, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
