"""Is it the codes or the synthesis? The parallel decoder trained on an oracle: the true log-mel spectrogram.

    python bench/oracle_decoder.py --model M.pt --manifest data/vcc2016/manifest.csv [--steps 1500] [--limit 20]
                                   [--out bench/results] [--name oracle-decoder]

Trains a parallel decoder of the model's own shape and recipe (recipes/vcc2016/conf/parallel.yaml: Adam 1e-3,
warmup 200, cosine to 1e-4, batch 8 x 8192 samples, multi-resolution STFT loss) conditioned on the true
80-bin log-mel at the model's frame rate instead of the codes, with the same quantised pitch track the codec
sends. Then scores it and the model's own parallel decoder (conditioned on the codes) on the same held-out
utterances as bench/codec.py. If the oracle scores far higher, the codes (the VQ-VAE) limit the codec; if
not, the synthesis (the decoder's design and loss) does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import auraloss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vqspeech and bench

from bench.codec import score, speaker_similarity_fn  # noqa: E402
from bench.common import held_out_rows, machine_note, write_atomic  # noqa: E402
from vqspeech import audio, checkpoint, features  # noqa: E402
from vqspeech.codec import api  # noqa: E402
from vqspeech.config import load_config  # noqa: E402
from vqspeech.data.dataset import SpeechDataset  # noqa: E402
from vqspeech.data.manifest import read_manifest  # noqa: E402
from vqspeech.models.parallel import ParallelDecoder  # noqa: E402
from vqspeech.train.fit import lr_lambda  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "vcc2016" / "conf" / "parallel.yaml"


def mel_condition(wav: torch.Tensor, hop: int) -> torch.Tensor:
    """wav [B, T] -> the oracle's conditioning [B, 80, T // hop]: log-mel, one frame per code."""
    return features.log_mel(wav, hop)


def train_oracle(model, manifest: str, steps: int, log_every: int = 250) -> ParallelDecoder:
    config = load_config(RECIPE)
    config.train.steps = steps
    c = model.config
    rows = [r for r in read_manifest(manifest) if r.split == "train" and r.speaker in model.speaker_names]
    data = SpeechDataset(rows, c, model.speaker_names, config.data.crop_samples)
    decoder = ParallelDecoder(c.parallel, 80, c.hop, c.sample_rate)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.train.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    loss_fn = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[2048, 1024, 512, 256, 128], hop_sizes=[512, 256, 128, 64, 32],
                                                    win_lengths=[2048, 1024, 512, 256, 128])
    generator = torch.Generator().manual_seed(0)
    start = time.process_time()
    for step in range(1, steps + 1):
        batch = data.batch(config.data.batch_size, generator)
        with torch.no_grad():
            cond = mel_condition(batch["wav"], c.hop)
            f0 = model.f0(batch["pitch"], batch["lf0"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = decoder(cond, f0)
        loss = loss_fn(out[:, None].float(), batch["wav"][:, None])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % log_every == 0:
            print(f"step {step}: MR-STFT {loss.item():.3f}, {(time.process_time() - start) / 3600:.3f} CPU-hours", flush=True)
    decoder.eval()
    return decoder


@torch.no_grad()
def oracle_decode(model, decoder: ParallelDecoder, wav: np.ndarray, seed: int) -> np.ndarray:
    """Decode with the oracle: the true log-mel of `wav` and the pitch track the codec would send."""
    encoded = model.encode(wav)
    n = encoded.codes.shape[0] * model.config.hop
    x = torch.from_numpy(np.pad(wav, (0, max(0, n - len(wav))))[:n])[None]
    f0 = model.f0(encoded.pitch[None], torch.tensor([[encoded.lf0_mean, encoded.lf0_std]]))
    noise = torch.randn(1, n, generator=torch.Generator().manual_seed(seed))
    return np.clip(decoder(mel_condition(x, model.config.hop), f0, noise)[0].numpy(), -1, 1)[: len(wav)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file (default: the shipped one)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", default="oracle-decoder")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = checkpoint.load(args.model)
    if model.parallel is None:
        raise SystemExit(f"{args.model}: has no parallel decoder to compare the oracle with")
    decoder = train_oracle(model, args.manifest, args.steps)
    similarity = speaker_similarity_fn()
    results: dict[str, list[dict]] = {"codes (the model's parallel decoder)": [], "oracle log-mel": []}
    for i, row in enumerate(held_out_rows(args.manifest, "valid", args.limit)):
        ref = audio.load(row.path)
        decoded, _ = api.decode_bytes(model, api.encode_audio(model, ref), decoder="parallel", seed=i)
        results["codes (the model's parallel decoder)"].append(score(ref, decoded, similarity))
        results["oracle log-mel"].append(score(ref, oracle_decode(model, decoder, ref, i), similarity))
    keys = list(results["oracle log-mel"][0])
    lines = [f"# Oracle decoder: {args.name}", "", f"{machine_note()}", "",
             f"Command: `python bench/oracle_decoder.py --model {args.model or 'the shipped model'} --manifest {args.manifest} "
             f"--steps {args.steps} --limit {args.limit}`", "",
             f"Parallel decoders of the same shape and training recipe ({args.steps} steps of "
             "`recipes/vcc2016/conf/parallel.yaml`; the model's own may have had more, see its training cost), "
             f"the same quantised pitch track; {args.limit} held-out utterances (those of bench/codec.py). Means.", "",
             "| conditioning | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, rows in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.3f}" for k in keys) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / f"{args.name}.md", "\n".join(lines) + "\n")
    write_atomic(args.out / f"{args.name}.json", json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
