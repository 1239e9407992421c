"""Prepare a corpus: resample to 16 kHz, trim silence, normalise loudness, cache, write the manifest.

Re-running does only what is missing; unreadable files are reported by name and skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import librosa
import numpy as np
from tqdm import tqdm

from vqspeech import audio
from vqspeech.data.corpora import RawUtterance
from vqspeech.data.manifest import Utterance, write_manifest

log = logging.getLogger(__name__)


def prepare(items: list[RawUtterance], out_dir: str | Path, top_db: float = 40.0) -> tuple[Path, list[str]]:
    """Write out_dir/audio/<speaker>/<utterance>.flac and out_dir/manifest.csv.

    Returns (manifest path, list of one-line problems with skipped files)."""
    out_dir = Path(out_dir)
    rows, problems = [], []
    for it in tqdm(items, desc="prepare", unit="file"):
        rel = Path("audio") / it.speaker / f"{it.utterance}.flac"
        dst = out_dir / rel
        try:
            if dst.exists():
                n = audio.sf.info(str(dst)).frames
            else:
                wav = audio.load(it.path)
                wav, _ = librosa.effects.trim(wav, top_db=top_db, frame_length=1024, hop_length=256)
                if len(wav) < audio.SAMPLE_RATE // 10:
                    raise audio.AudioError(f"{it.path}: shorter than 0.1 s after trimming silence")
                audio.save(dst, audio.normalise(wav))
                n = len(wav)
        except audio.AudioError as e:
            problems.append(str(e))
            continue
        rows.append(Utterance(str(rel), it.speaker, it.utterance, round(n / audio.SAMPLE_RATE, 3), it.split, it.text))
    manifest = out_dir / "manifest.csv"
    write_manifest(manifest, rows)
    counts = {s: sum(r.split == s for r in rows) for s in ("train", "valid", "unseen")}
    hours = sum(r.duration for r in rows) / 3600
    log.info("manifest %s: %d utterances (%s), %.2f h, %d speakers, %d skipped", manifest, len(rows), counts, hours,
             len({r.speaker for r in rows}), len(problems))
    for p in problems:
        log.warning("skipped: %s", p)
    return manifest, problems
