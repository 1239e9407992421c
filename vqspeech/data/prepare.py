"""Prepare a corpus: resample to 16 kHz, trim silence, normalise loudness, cache, write the manifest.

Output folder:
    audio/<speaker>/<utterance>.flac   16 kHz, 16-bit, trimmed and level-normalised (the cache)
    manifest.csv                       one row per usable utterance (see `manifest`)
    speakers.csv                       gender / accent / region where the corpus gives them
    skipped.txt                        one line per file left out, naming it and the problem

Every file is written atomically, so an interrupted run leaves no broken file; a re-run redoes only
the utterances whose cached file is missing or older than its source. Unreadable, empty, silent or
too-short files are skipped and reported by name; they never stop the run.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
from tqdm import tqdm

from vqspeech import audio
from vqspeech.data.corpora import RawUtterance
from vqspeech.data.manifest import SPLITS, Speaker, Utterance, atomic_open, write_manifest, write_speakers

log = logging.getLogger(__name__)

MIN_SECONDS = 0.1  # shorter than this after trimming is not an utterance


def _cached_samples(src: Path, dst: Path) -> int | None:
    """Length of a usable cached file, or None if it must be (re)made."""
    try:
        if dst.stat().st_mtime >= src.stat().st_mtime:
            return audio.sf.info(str(dst)).frames
    except (OSError, RuntimeError):  # missing cache or source, or a cache soundfile cannot read
        pass
    return None


def prepare_file(src: str, dst: str, top_db: float) -> tuple[int, bool, str]:
    """One utterance -> (samples, made now?, problem). The problem is "" on success; otherwise it names
    the file, and nothing is written."""
    src_p, dst_p = Path(src), Path(dst)
    n = _cached_samples(src_p, dst_p)
    if n is not None:
        return n, False, ""
    try:
        wav = audio.load(src_p, normalise_level=False)
        wav, _ = librosa.effects.trim(wav, top_db=top_db, frame_length=1024, hop_length=256)
        if len(wav) < MIN_SECONDS * audio.SAMPLE_RATE:
            raise audio.AudioError(f"{src}: shorter than {MIN_SECONDS} s after trimming silence")
        audio.save(dst_p, audio.normalise(wav))
    except audio.AudioError as e:
        return 0, False, str(e)
    return len(wav), True, ""


def _star(args):
    return prepare_file(*args)


def prepare(items: list[RawUtterance], out_dir: str | Path, top_db: float = 40.0,
            speakers: dict[str, Speaker] | None = None, jobs: int = 1, corpus: str = "") -> tuple[Path, list[str]]:
    """Prepare `items` into out_dir (layout above), with `jobs` processes; every row names `corpus`.

    Returns (manifest path, list of one-line problems with skipped files)."""
    out_dir = Path(out_dir)
    problems, tasks, seen = [], [], {}
    for it in items:
        key = (it.speaker, it.utterance)
        if key in seen:  # e.g. a.wav beside a.flac: both would be cached as the same file
            problems.append(f"{it.path}: same speaker and utterance id as {seen[key]}; left out")
            continue
        seen[key] = it.path
        tasks.append((it, Path("audio") / it.speaker / f"{it.utterance}.flac"))
    args = [(str(it.path), str(out_dir / rel), top_db) for it, rel in tasks]
    out_dir.mkdir(parents=True, exist_ok=True)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(tqdm(pool.map(_star, args, chunksize=8), total=len(args), desc="prepare", unit="file"))
    else:
        results = [prepare_file(*a) for a in tqdm(args, desc="prepare", unit="file")]

    rows, made = [], 0
    for (it, rel), (n, new, problem) in zip(tasks, results):
        if problem:
            problems.append(problem)
            continue
        made += new
        rows.append(Utterance(str(rel), it.speaker, it.utterance, round(n / audio.SAMPLE_RATE, 3), it.split, it.text, corpus))
    manifest = out_dir / "manifest.csv"
    write_manifest(manifest, rows)
    known = speakers or {}
    write_speakers(out_dir / "speakers.csv", [known.get(s, Speaker(s)) for s in sorted({r.speaker for r in rows})])
    with atomic_open(out_dir / "skipped.txt") as f:
        f.writelines(p + "\n" for p in problems)
    log.info("%s", summary(manifest, rows, problems, made))
    for p in problems:
        log.warning("skipped: %s", p)
    return manifest, problems


def summary(manifest: Path, rows: list[Utterance], problems: list[str], made: int) -> str:
    counts = ", ".join(f"{s} {sum(r.split == s for r in rows)}" for s in SPLITS)
    hours = sum(r.duration for r in rows) / 3600
    return (f"{manifest}: {len(rows)} utterances of {len({r.speaker for r in rows})} speakers, {hours:.2f} h "
            f"({counts}); {made} prepared now, {len(rows) - made} from the cache; {len(problems)} skipped"
            + (f" (listed in {manifest.parent / 'skipped.txt'})" if problems else ""))

