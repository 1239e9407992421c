"""The codec's ceiling in an adapted voice, measured fairly. For each held-out target and each of its 3
references, find the voice from the other 2 (embed, and adapt), decode the left-out reference from its own codes in
it, and let both judges name it (they enrol on the other 5 recordings, never on the references).

    python bench/vc_adapt_ceiling.py [--model M.pt] [--targets-data DIR] > bench/results/vc-adapt-ceiling-v4.1.txt

(about 13 min on one thread; --targets-data defaults to ../shared/data/speechocean762 beside the checkout)

A conversion cannot beat this ceiling; the gap between them is what conversion keeps of its source.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO))
from vc_voices import HeldOutVoices  # noqa: E402

from vqspeech import checkpoint, conversion  # noqa: E402

METHODS = ("embed", "adapt")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "vqspeech" / "pretrained" / "anyvoice.pt"))
    p.add_argument("--targets-data", type=Path, default=REPO.parent / "shared" / "data" / "speechocean762",
                   help="speechocean762 root (default ../shared/data/speechocean762 beside the checkout)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load(args.model)
    voices = HeldOutVoices(args.targets_data)
    rows = []  # (target, group, method, named by resemblyzer, named by the MFCC judge)
    t0 = time.time()
    for t in voices.names:
        for i in range(len(voices.refs[t])):
            others = [r for j, r in enumerate(voices.refs[t]) if j != i]
            encoded = model.encode(voices.refs[t][i])
            embed = conversion.reference_voice(model, others, method="embed")
            adapted = conversion.Voice(embed.vector, embed.lf0, None, conversion.adapt_decoder(model, others, embed.vector))
            for name, voice in zip(METHODS, (embed, adapted)):
                by_resemblyzer, by_mfcc = voices.judged(conversion.render(model, encoded, voice,
                                                                       generator=torch.Generator().manual_seed(0)))
                rows.append((t, voices.groups[t], name, by_resemblyzer == t, by_mfcc == t))
        so_far = {n: f"{np.mean([x[3] for x in rows if x[2] == n]):.0%}/{np.mean([x[4] for x in rows if x[2] == n]):.0%}"
                  for n in METHODS}
        print(t, so_far, f"{time.time() - t0:.0f}s", flush=True)
    for g in sorted(set(voices.groups.values())):
        for n in METHODS:
            sel = [x for x in rows if x[1] == g and x[2] == n]
            print(g, n, f"{np.mean([x[3] for x in sel]):.0%} / {np.mean([x[4] for x in sel]):.0%}", len(sel))
    a, e = (np.array([[x[3], x[4]] for x in rows if x[2] == n], float) for n in ("adapt", "embed"))
    d = a - e
    print(f"adapt - embed (paired, {len(d)}):", [f"{d[:, k].mean():+.3f} ± {d[:, k].std(ddof=1) / np.sqrt(len(d)):.3f}" for k in (0, 1)])


if __name__ == "__main__":
    main()
