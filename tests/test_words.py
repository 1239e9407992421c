"""vqspeech/eval/words.py: pocketsphinx's reading of speech and its forced alignment of a known transcript."""

import shutil
import subprocess

import numpy as np
import pytest

from vqspeech import audio
from vqspeech.eval import words

pytest.importorskip("pocketsphinx")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (sudo apt-get install flite)")


@needs_flite
def test_forced_alignment_finds_flite_s_own_phone_boundaries(tmp_path):
    text = "the birch canoe slid on the smooth planks"
    path = tmp_path / "s.wav"
    done = subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(path), "-psdur"], capture_output=True, text=True,
                          check=True)
    truth = [(p.upper(), float(t)) for p, t in (item.rsplit(":", 1) for item in done.stdout.split() if ":" in item)]
    wav = audio.load(path, 16000)
    phones = words.align_phones(wav, text)
    assert phones is not None
    spoken = [p for p, _ in phones if p != "SIL"]
    assert spoken[:4] == ["DH", "AH", "B", "ER"] and spoken[-3:] == ["NG", "K", "S"]
    ends = np.array([t for _, t in phones])
    assert np.all(np.diff(ends) >= 0) and abs(ends[-1] - len(wav) / 16000) < 0.02
    # Each true phone's end (flite's timing) lies near an aligned boundary: the median miss is a frame or two.
    misses = [np.abs(ends - t).min() for p, t in truth if p != "PAU"]
    assert np.median(misses) < 0.03, np.median(misses)


def test_alignment_of_words_that_are_not_there_is_refused_not_invented():
    noise = np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32)
    assert words.align_phones(noise, "qqqzzz") is None  # not in the dictionary
