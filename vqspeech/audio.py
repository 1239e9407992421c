"""Audio I/O and sample-level transforms: the only place that reads or writes audio files.

Waveforms are float32 numpy arrays in [-1, 1] at ``SAMPLE_RATE`` unless a function says otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from vqspeech.fileio import atomic_path

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")


class AudioError(ValueError):
    """A file that cannot be used as speech; the message names the file and the problem."""


OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def warn_if_truncated(path: Path, f: "sf.SoundFile") -> None:
    """A WAV cut short (a copy stopped mid-way) reads without error, to where it ends: say so, naming the file.
    libsndfile notes it in its chunk report as "data : DECLARED (should be ACTUAL)"."""
    import logging
    import re

    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", f.extra_info or "", re.M)
    if match and int(match.group(2)) < int(match.group(1)):
        logging.getLogger("vqspeech.audio").warning(
            "%s: truncated: its header declares %d bytes of audio, the file holds %d (%.2f s read); the rest is missing",
            path, int(match.group(1)), int(match.group(2)), f.frames / f.samplerate)


def load(path: str | Path, sample_rate: int = SAMPLE_RATE, normalise_level: bool = True) -> np.ndarray:
    """Read any soundfile-supported file, mix to mono, resample, check it, optionally normalise.

    Returns float32 [T]. Raises AudioError for a missing, unreadable, empty, silent or non-finite file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        with sf.SoundFile(str(path)) as f:
            warn_if_truncated(path, f)
            data, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, TypeError)
        raise AudioError(f"{path}: not a readable audio file ({_first_line(e)})") from None
    wav = data.mean(axis=1)
    if wav.size == 0:
        raise AudioError(f"{path}: empty audio")
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if rate != sample_rate:
        wav = soxr.resample(wav, rate, sample_rate, quality="HQ").astype(np.float32)
    if np.abs(wav).max() < 1e-4:
        raise AudioError(f"{path}: audio is silent")
    return normalise(wav) if normalise_level else wav


LEVEL_DB = -23.0  # target RMS over the louder half of 20 ms frames
LEVEL_PEAK = 0.95  # ... limited so that |peak| stays below this
LEVEL_FRAME = 320


@dataclass
class Level:
    n_samples: int
    gain: float  # the factor that normalises the whole signal
    peak: float  # the signal's peak after normalisation


def measure_level(blocks: Iterable[np.ndarray], name: str = "audio") -> Level:
    """Length, checks (as `load` makes them) and the loudness-normalisation gain of a signal given as
    consecutive blocks, so a long file is measured without holding it in memory. The level is the RMS over
    the louder half of 20 ms frames (pauses do not drag it down), limited so the peak stays below LEVEL_PEAK."""
    energies, rest, n, peak = [], np.zeros(0, np.float32), 0, np.float32(0)
    for x in blocks:
        if not np.isfinite(x).all():
            raise AudioError(f"{name}: audio contains NaN or infinite samples")
        if x.size:
            n += x.size
            peak = max(peak, np.abs(x).max())
            rest = np.concatenate([rest, x])
            whole = rest.size // LEVEL_FRAME * LEVEL_FRAME
            if whole:
                energies.append((rest[:whole].reshape(-1, LEVEL_FRAME) ** 2).mean(axis=1))
                rest = rest[whole:]
    if n == 0:
        raise AudioError(f"{name}: empty audio")
    if peak < 1e-4:
        raise AudioError(f"{name}: audio is silent")
    if not energies:  # shorter than one frame: measure the whole signal
        energies.append((rest[None] ** 2).mean(axis=1))
    energy = np.sort(np.concatenate(energies))
    rms = float(np.sqrt(energy[len(energy) // 2 :].mean() + 1e-12))
    gain = min(10 ** (LEVEL_DB / 20) / rms, LEVEL_PEAK / (peak + 1e-12))
    return Level(n_samples=n, gain=gain, peak=float(peak) * gain)


def normalise(wav: np.ndarray) -> np.ndarray:
    """Scale a whole signal to the standard level (see measure_level)."""
    return (wav * measure_level([wav]).gain).astype(np.float32)


def save(path: str | Path, wav: np.ndarray, sample_rate: int = SAMPLE_RATE, force: bool = True) -> None:
    """Write 16-bit audio atomically: to a temporary file beside `path`, then rename."""
    path = Path(path)
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    with atomic_path(path, overwrite=force) as tmp:
        sf.write(tmp, np.clip(wav, -1, 1), sample_rate, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")


def mu_law_compress(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Float in [-1, 1] -> float in [-1, 1], mu-law companded (mu = 2**bits - 1), not yet quantised."""
    mu = 2**bits - 1
    x = x.clamp(-1, 1)
    return torch.sign(x) * torch.log1p(mu * x.abs()) / np.log1p(mu)


def mu_law_encode(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Float in [-1, 1] -> integer class in [0, 2**bits) (mu-law companding, mu = 2**bits - 1)."""
    mu = 2**bits - 1
    return ((mu_law_compress(x, bits) + 1) / 2 * mu + 0.5).long()


def mu_law_decode(q: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Integer class -> float in [-1, 1]; the inverse of mu_law_encode up to quantisation."""
    mu = 2**bits - 1
    y = 2 * q.float() / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def preemphasis(x: torch.Tensor, coef: float) -> torch.Tensor:
    """y[t] = x[t] - coef * x[t-1] along the last axis (x[-1] = 0)."""
    if coef == 0:
        return x
    return torch.cat([x[..., :1], x[..., 1:] - coef * x[..., :-1]], dim=-1)


def deemphasis(y: np.ndarray, coef: float) -> np.ndarray:
    """Inverse of preemphasis: x[t] = y[t] + coef * x[t-1]."""
    if coef == 0:
        return y
    from scipy.signal import lfilter

    return lfilter([1.0], [1.0, -coef], y, axis=-1).astype(np.float32)


# --- streaming: files of any length in bounded memory (codec/stream.py) --------------------------

def read_blocks(path: str | Path, sample_rate: int, block_frames: int = 1 << 16) -> Iterator[np.ndarray]:
    """Stream any soundfile-readable file as mono float32 blocks at `sample_rate` (resampled on the fly).

    The samples equal audio.load(path, normalise_level=False) block for block: the same channel mean and
    the same soxr resampler (streamed soxr equals one-shot soxr)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, TypeError)
        raise AudioError(f"{path}: not a readable audio file ({_first_line(e)})") from None
    with f:
        warn_if_truncated(path, f)
        resampler = None
        if f.samplerate != sample_rate:
            resampler = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
        blocks = f.blocks(blocksize=block_frames, dtype="float32", always_2d=True)
        held = None  # one block of look-ahead: the resampler must be told which block is the last
        while True:
            try:
                block = next(blocks, None)
            except Exception as e:
                raise AudioError(f"{path}: unreadable audio data ({_first_line(e)})") from None
            if held is not None:
                mono = held.mean(axis=1)
                yield mono if resampler is None else resampler.resample_chunk(mono, last=block is None)
            if block is None:
                return
            held = block


class AudioWriter:
    """Write audio piece by piece to a temporary file beside `path`, renamed over it only on success.

    Pieces come at `source_rate` and are resampled on the fly to `sample_rate`. Use as a context
    manager: an exception inside leaves no file behind (and the old one, if any, untouched)."""

    def __init__(self, path: str | Path, sample_rate: int, source_rate: int, overwrite: bool = False):
        self.path, self.sample_rate, self.overwrite = Path(path), sample_rate, overwrite
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_FORMATS:
            raise ValueError(f"{self.path}: cannot write {suffix or 'files without an extension'} (use {', '.join(OUTPUT_FORMATS)})")
        self._format, self._subtype = OUTPUT_FORMATS[suffix]
        self._resampler = None
        if sample_rate != source_rate:
            self._resampler = soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32", quality="HQ")
        self.n_written = 0

    def __enter__(self) -> "AudioWriter":
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path, self.overwrite))
            self._file = sf.SoundFile(tmp, "w", self.sample_rate, 1, self._subtype, format=self._format)
            self._target = stack.pop_all()  # kept open until __exit__
        return self

    def write(self, wav: np.ndarray, last: bool = False) -> None:
        wav = np.asarray(wav, np.float32)
        if self._resampler is not None:
            wav = self._resampler.resample_chunk(wav, last=last)
        self._file.write(np.clip(wav, -1.0, 1.0))
        self.n_written += wav.size

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._target:  # leaving it renames the temp file over `path`, or removes it if anything failed
            try:
                if exc_type is None and self._resampler is not None:
                    self.write(np.zeros(0, np.float32), last=True)
            finally:
                self._file.close()
            if exc is not None:
                raise exc  # so the temp file is removed, not renamed
