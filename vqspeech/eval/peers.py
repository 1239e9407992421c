"""Classical codecs to compare against, run through Debian's command-line tools in the same run.

Each peer takes a 16 kHz float32 waveform and returns (decoded 16 kHz waveform, bits used). Bits come from
the real file sizes the tools write (codec2's headerless bit file; Opus's Ogg file, container included).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


@dataclass
class Peer:
    name: str
    tools: tuple[str, ...]

    def available(self) -> bool:
        return all(shutil.which(t) for t in self.tools)

    def run(self, wav: np.ndarray, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
        raise NotImplementedError


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")


@dataclass
class Codec2(Peer):
    """Codec 2 at `mode` bit/s: 8 kHz narrowband, so the input is downsampled and the output upsampled."""

    mode: int = 2400

    def run(self, wav: np.ndarray, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
        pcm8 = (np.clip(soxr.resample(wav, sample_rate, 8000), -1, 1) * 32767).astype("<i2")
        with tempfile.TemporaryDirectory() as tmp:
            raw, bits, out = Path(tmp) / "in.raw", Path(tmp) / "x.bit", Path(tmp) / "out.raw"
            raw.write_bytes(pcm8.tobytes())
            _run(["c2enc", str(self.mode), str(raw), str(bits)])
            _run(["c2dec", str(self.mode), str(bits), str(out)])
            n_bits = bits.stat().st_size * 8
            dec8 = np.frombuffer(out.read_bytes(), "<i2").astype(np.float32) / 32767
        return soxr.resample(dec8, 8000, sample_rate).astype(np.float32)[: len(wav)], n_bits


@dataclass
class Opus(Peer):
    """Opus (libopus through opus-tools) at `kbps`, speech tuning; bits include the Ogg container."""

    kbps: float = 6.0

    def run(self, wav: np.ndarray, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            src, enc, out = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
            sf.write(src, wav, sample_rate, subtype="PCM_16")
            _run(["opusenc", "--quiet", "--bitrate", str(self.kbps), "--speech", str(src), str(enc)])
            _run(["opusdec", "--quiet", "--rate", str(sample_rate), str(enc), str(out)])
            dec, rate = sf.read(out, dtype="float32")
            n_bits = enc.stat().st_size * 8
        return dec[: len(wav)], n_bits


def default_peers() -> list[Peer]:
    return [Codec2("codec2-1600", ("c2enc", "c2dec"), 1600), Codec2("codec2-2400", ("c2enc", "c2dec"), 2400),
            Codec2("codec2-3200", ("c2enc", "c2dec"), 3200), Opus("opus-6k", ("opusenc", "opusdec"), 6.0)]
