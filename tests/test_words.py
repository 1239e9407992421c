"""vqspeech/eval/words.py: pocketsphinx's reading of speech, its forced alignment of a known transcript, and word agreement."""

import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import synthetic_voice
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


def test_word_agreement():
    assert words.edit_distance("the cat sat".split(), "the bat sat down".split()) == 2
    assert words.agreement("a b c d".split(), "a b c d".split()) == 1.0
    assert words.agreement("a b c d".split(), "a x c".split()) == 0.5
    assert words.agreement("a b".split(), "x y z w v".split()) == 0.0
    assert np.isnan(words.agreement([], ["a"]))


@needs_flite
def test_pocketsphinx_hears_words_whatever_came_before(tmp_path):
    subprocess.run(["flite", "-t", "the quick brown fox jumps over the lazy dog", "-o", str(tmp_path / "fox.wav")], check=True)
    fox = audio.load(tmp_path / "fox.wav")
    first = words.recognise(fox)
    assert len({"quick", "brown", "fox", "over"} & set(first)) >= 3, first
    words.recognise(audio.normalise(synthetic_voice(1.0, 150.0, 0)))  # something else in between must not change the next reading
    assert words.recognise(fox) == first
