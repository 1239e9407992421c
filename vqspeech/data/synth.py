"""Synthesize a small multi-speaker corpus with flite, written in the VCTK 0.92 layout.

    OUT/wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic1.flac   audio (flite's 16 kHz; the folder name is VCTK's)
    OUT/wav48_silence_trimmed/<spk>/<spk>_<nnn>.lab         phone timings from `flite -psdur`:
                                                            start<TAB>end<TAB>phone in seconds (Audacity labels)
    OUT/txt/<spk>/<spk>_<nnn>.txt                           transcript
    OUT/speaker-info.txt                                    ID AGE GENDER ACCENTS REGION, as VCTK writes it

So the VCTK reader reads it, and CI exercises the same code path as the real corpus. Every speaker reads
the same prompts (utterance <nnn> is prompt nnn), so the corpus is parallel, like VCC 2016.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from vqspeech import audio
from vqspeech.data.manifest import atomic_open
from vqspeech.fileio import temp_path

log = logging.getLogger(__name__)

INSTALL_HINT = ("install it with `sudo apt-get install flite` (Debian, Ubuntu; `bash setup.sh` does this) "
                "or `brew install flite` (macOS), then run again")


class FliteMissing(FileNotFoundError):
    pass


@dataclass(frozen=True)
class SynthSpeaker:
    name: str
    voice: str  # flite voice
    gender: str
    accent: str
    f0: float | None = None  # int_f0_target_mean (Hz); None keeps the voice's own
    stretch: float = 1.0  # duration_stretch: > 1 speaks slower

    @property
    def features(self) -> list[str]:
        out = ["--setf", f"duration_stretch={self.stretch}"]
        return out + (["--setf", f"int_f0_target_mean={self.f0}"] if self.f0 else [])

    @property
    def recipe(self) -> str:
        return f"flite:{self.voice},f0={self.f0 or 'own'},stretch={self.stretch}"


# The four flite voices first, then new speakers made from them by changing pitch and rate. rms is the
# exception: flite 2.2 ignores pitch targets for it (measured), so its variant changes only the rate.
SPEAKERS = (
    SynthSpeaker("awb", "awb", "M", "Scottish"),
    SynthSpeaker("slt", "slt", "F", "American"),
    SynthSpeaker("rms", "rms", "M", "American"),
    SynthSpeaker("kal", "kal16", "M", "American"),
    SynthSpeaker("sltlow", "slt", "F", "American", f0=145, stretch=1.15),
    SynthSpeaker("awbhigh", "awb", "M", "Scottish", f0=165, stretch=0.9),
    SynthSpeaker("slthigh", "slt", "F", "American", f0=230, stretch=0.9),
    SynthSpeaker("kalhigh", "kal16", "M", "American", f0=135, stretch=1.1),
    SynthSpeaker("rmsslow", "rms", "M", "American", stretch=1.3),
    SynthSpeaker("awblow", "awb", "M", "Scottish", f0=95, stretch=1.1),
)


def find_flite(flite: str = "flite", voices: set[str] = frozenset()) -> str:
    """Path of the flite binary, checked to have `voices`; a clear error with the install hint if not."""
    path = shutil.which(flite)
    if path is None:
        raise FliteMissing(f"{flite}: not found on PATH; the mini corpus is synthesized with flite: {INSTALL_HINT}")
    listed = subprocess.run([path, "-lv"], capture_output=True, text=True).stdout
    available = set(listed.split(":", 1)[-1].split())
    if voices - available:
        raise ValueError(f"{path}: lacks flite voice(s) {', '.join(sorted(voices - available))} "
                         f"(it has {', '.join(sorted(available)) or 'none'}); ask for fewer speakers")
    return path


def read_prompts(path: str | Path) -> list[str]:
    """Sentences from a text file: festvox prompts (`( id "text" )` lines, as cmuarctic.data) or one
    sentence per line (blank lines and # comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompt file")
    text = path.read_text(encoding="utf-8", errors="replace")
    prompts = re.findall(r'^\(\s*\S+\s+"(.*)"\s*\)\s*$', text, re.M)
    if not prompts:
        prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path}: no sentences in it")
    return [" ".join(p.split()) for p in prompts]


def parse_psdur(stdout: str) -> list[tuple[float, float, str]]:
    """`flite -psdur` output ("pau:0.184 dh:0.228 ...", end times) -> [(start, end, phone)]."""
    out, start = [], 0.0
    for token in stdout.split():
        phone, sep, end = token.rpartition(":")
        if not sep:
            continue
        try:
            end_s = float(end)
        except ValueError:
            continue
        out.append((start, end_s, phone))
        start = end_s
    return out


def synthesize_one(flite: str, speaker: SynthSpeaker, text: str, wav_path: Path, lab_path: Path, txt_path: Path) -> None:
    """Speak `text`; write transcript and phone timings, then the audio last: the audio file's presence
    (each write is atomic) means the utterance is complete."""
    with temp_path(wav_path, suffix=".flite.wav") as tmp:  # flite's own output, read back and removed
        cmd = [flite, "-voice", speaker.voice, *speaker.features, "-psdur", "-t", text, "-o", str(tmp)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        phones = parse_psdur(run.stdout)
        if run.returncode != 0 or not phones or os.path.getsize(tmp) == 0:
            detail = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
            raise ValueError(f"flite failed for speaker {speaker.name} on {text!r}: {detail}")
        wav = audio.load(tmp, normalise_level=False)
        with atomic_open(txt_path) as f:
            f.write(text + "\n")
        with atomic_open(lab_path) as f:
            f.writelines(f"{s:.3f}\t{e:.3f}\t{p}\n" for s, e, p in phones)
        audio.save(wav_path, wav)


def synthesize_corpus(out: str | Path, prompts: list[str], n_speakers: int = len(SPEAKERS), per_speaker: int = 20,
                      flite: str = "flite") -> tuple[int, int]:
    """Every one of the first `n_speakers` of SPEAKERS reads the first `per_speaker` prompts.
    Utterances already there are kept. Returns (made now, already there)."""
    if not 1 <= n_speakers <= len(SPEAKERS):
        raise ValueError(f"--speakers {n_speakers}: between 1 and {len(SPEAKERS)}")
    if per_speaker < 1:
        raise ValueError(f"--per-speaker {per_speaker}: at least 1")
    if per_speaker > len(prompts):
        raise ValueError(f"--per-speaker {per_speaker}: the prompt file has only {len(prompts)} sentences")
    speakers = SPEAKERS[:n_speakers]
    flite = find_flite(flite, {s.voice for s in speakers})
    out = Path(out)
    with atomic_open(out / "speaker-info.txt") as f:
        f.write("ID  AGE  GENDER  ACCENTS  REGION\n")
        f.writelines(f"{s.name}  -  {s.gender}  {s.accent}  {s.recipe}\n" for s in speakers)
    made = kept = 0
    jobs = [(s, i, prompts[i]) for s in speakers for i in range(per_speaker)]
    for spk, i, text in tqdm(jobs, desc="synthesize", unit="utt"):
        utt = f"{spk.name}_{i + 1:03d}"
        wav = out / "wav48_silence_trimmed" / spk.name / f"{utt}_mic1.flac"
        lab, txt = wav.with_name(f"{utt}.lab"), out / "txt" / spk.name / f"{utt}.txt"
        if wav.exists() and lab.exists() and txt.exists():
            kept += 1
            continue
        synthesize_one(flite, spk, text, wav, lab, txt)
        made += 1
    log.info("%s: %d utterances of %d speakers (%d made now, %d already there)", out, made + kept, len(speakers), made, kept)
    return made, kept
