"""The corpus layer: VCTK (both layouts), VCC 2016 and folder readers, prepare, manifest, flite synthesis.

Every corpus is a tiny fixture built here in tmp_path: no test reads /work/shared or the network."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import synthetic_voice
from vqspeech.data import corpora, manifest, synth
from vqspeech.data.prepare import prepare

# speaker -> (gender, accent, region, f0, utterances)
SPEAKERS = {
    "p225": ("F", "English", "Southern England", 210.0, 4),
    "p226": ("M", "English", "Surrey", 110.0, 4),  # in corpora.VCTK_UNSEEN
    "p280": ("F", "French", "France", 190.0, 3),  # as in 0.92: no mic2 recordings
    "p315": ("M", "American", "Connecticut", 120.0, 3),  # as in VCTK: no transcripts
}


def make_vctk(root: Path, version: str, seconds: float = 0.4, rate: int = 48000) -> Path:
    """A VCTK tree in the 0.92 or 0.80 layout, with the corpus's own quirks (see SPEAKERS)."""
    info = ["ID  AGE  GENDER  ACCENTS  REGION  COMMENTS"]
    for s, (spk, (gender, accent, region, f0, n)) in enumerate(SPEAKERS.items()):
        info.append(f"{spk if version == '0.92' else spk[1:]}  23  {gender}    {accent}  {region}")
        for i in range(1, n + 1):
            utt = f"{spk}_{i:03d}"
            wav = synthetic_voice(seconds, f0, seed=10 * s + i, sample_rate=rate)
            if version == "0.92":
                folder = root / "wav48_silence_trimmed" / spk
                folder.mkdir(parents=True, exist_ok=True)
                for mic, gain in (("mic1", 1.0), ("mic2", 0.5)):
                    if not (spk == "p280" and mic == "mic2"):
                        sf.write(folder / f"{utt}_{mic}.flac", wav * gain, rate)
            else:
                folder = root / "wav48" / spk
                folder.mkdir(parents=True, exist_ok=True)
                sf.write(folder / f"{utt}.wav", wav, rate)
            if spk != "p315":
                (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (root / "txt" / spk / f"{utt}.txt").write_text(f"Sentence {i} of {spk}.\n")
    (root / "txt" / "p225" / "p225_099.txt").write_text("A transcript whose audio is missing.\n")  # as p362
    (root / "speaker-info.txt").write_text("\n".join(info) + "\n")
    return root


@pytest.fixture
def vctk092(tmp_path) -> Path:
    return make_vctk(tmp_path / "VCTK-Corpus-0.92", "0.92")


def by_id(items):
    return {(it.speaker, it.utterance): it for it in items}


# --- readers -----------------------------------------------------------------------------------------

def test_vctk_092_reads_one_mic_transcripts_and_splits(vctk092):
    items = corpora.vctk(vctk092, mic="mic1", valid_per_speaker=1)
    assert len(items) == 4 + 4 + 3 + 3  # p225_099 has a transcript but no audio: not an utterance
    got = by_id(items)
    assert got[("p225", "p225_002")].path.name == "p225_002_mic1.flac"
    assert got[("p225", "p225_002")].text == "Sentence 2 of p225."
    assert got[("p315", "p315_001")].text == ""  # kept without a transcript
    # p226 is in the fixed unseen list; every other speaker holds out its last utterance for validation
    assert {it.split for it in items if it.speaker == "p226"} == {"unseen"}
    for spk, last in (("p225", "p225_004"), ("p280", "p280_003"), ("p315", "p315_003")):
        assert [it.utterance for it in items if it.speaker == spk and it.split == "valid"] == [last]


def test_vctk_092_mic2_falls_back_for_speakers_without_it(vctk092):
    items = corpora.vctk(vctk092, mic="mic2", valid_per_speaker=0, unseen_speakers=())
    mics: dict[str, set[str]] = {}
    for it in items:
        mics.setdefault(it.speaker, set()).add(it.path.stem.rsplit("_", 1)[1])
    assert mics == {"p225": {"mic2"}, "p226": {"mic2"}, "p280": {"mic1"}, "p315": {"mic2"}}
    assert {it.split for it in items} == {"train"}


def test_vctk_080_layout_and_speaker_ids_without_p(tmp_path):
    root = make_vctk(tmp_path / "VCTK-Corpus", "0.80")
    items = corpora.vctk(root, valid_per_speaker=2, unseen_speakers=("p280",))
    assert len(items) == 14
    assert by_id(items)[("p226", "p226_001")].path.name == "p226_001.wav"
    assert by_id(items)[("p226", "p226_001")].text == "Sentence 1 of p226."
    info = corpora.vctk_speakers(root)  # "225  23  F ..." in 0.80 becomes p225
    assert (info["p225"].gender, info["p225"].accent, info["p225"].region) == ("F", "English", "Southern England")
    assert info["p226"].gender == "M"
    assert sum(it.split == "valid" for it in items) == 2 * 3 and sum(it.split == "unseen" for it in items) == 3


def test_valid_split_always_leaves_a_training_utterance(vctk092):
    items = corpora.vctk(vctk092, valid_per_speaker=50, unseen_speakers=())
    for spk in SPEAKERS:
        assert sum(it.split == "train" for it in items if it.speaker == spk) == 1


def test_not_a_vctk_folder_is_a_clear_error(tmp_path):
    (tmp_path / "p225").mkdir()
    with pytest.raises(FileNotFoundError, match="wav48_silence_trimmed"):
        corpora.vctk(tmp_path)
    with pytest.raises(ValueError, match="mic"):
        corpora.vctk(tmp_path, mic="mic3")


def test_vcc2016_holds_out_the_same_sentences_for_every_speaker(tmp_path):
    root = tmp_path / "vcc"
    for s, spk in enumerate(["SF1", "TM1", "TF2"]):
        (root / spk).mkdir(parents=True)
        for i in range(1, 6):
            sf.write(root / spk / f"1000{i:02d}.wav", synthetic_voice(0.3, 150 + 30 * s, seed=s * 10 + i), 16000)
    (root / "SF1" / "notes.wav").write_bytes(b"")  # not a sentence file: left out, not an error
    items = corpora.vcc2016(root, valid_sentences=2)
    assert len(items) == 15
    assert {(it.speaker, it.utterance) for it in items if it.split == "valid"} == {
        (spk, u) for spk in ("SF1", "TM1", "TF2") for u in ("100004", "100005")}
    _, speakers = corpora.read_corpus("vcc2016", root)
    assert speakers["TM1"].gender == "M" and speakers["SF1"].gender == "F"


def test_folder_reader_splits(corpus_dir):
    items = corpora.folder_per_speaker(corpus_dir, valid_per_speaker=1, unseen_speakers=("bob",))
    assert [(it.speaker, it.utterance, it.split) for it in items] == [
        ("alice", "alice_000", "train"), ("alice", "alice_001", "train"), ("alice", "alice_002", "valid"),
        ("bob", "bob_000", "unseen"), ("bob", "bob_001", "unseen"), ("bob", "bob_002", "unseen")]


# --- prepare -----------------------------------------------------------------------------------------

def test_prepare_vctk_writes_manifest_speakers_and_16k_audio(tmp_path, vctk092):
    items, speakers = corpora.read_corpus("vctk", vctk092, valid=1)
    path, problems = prepare(items, tmp_path / "prep", speakers=speakers)
    assert problems == []
    rows = manifest.read_manifest(path)
    assert len(rows) == 14
    assert {s: sum(r.split == s for r in rows) for s in manifest.SPLITS} == {"train": 7, "valid": 3, "unseen": 4}
    row = next(r for r in rows if r.utterance == "p225_001")
    assert row.text == "Sentence 1 of p225." and row.speaker == "p225"
    info = sf.info(row.path)
    assert info.samplerate == 16000 and abs(row.duration - info.frames / 16000) < 1e-3
    wav, _ = sf.read(row.path)
    assert np.abs(wav).max() <= 0.95 + 1e-3  # normalise's peak limit
    spk = manifest.read_speakers(path.parent / "speakers.csv")
    assert (spk["p280"].gender, spk["p280"].accent) == ("F", "French")
    assert set(spk) == set(SPEAKERS)


def test_prepare_trims_leading_and_trailing_silence(tmp_path):
    root = tmp_path / "c"
    (root / "a").mkdir(parents=True)
    voice = synthetic_voice(0.5, 150, seed=1)
    sf.write(root / "a" / "x.wav", np.concatenate([np.zeros(8000), voice, np.zeros(16000)]).astype(np.float32), 16000)
    path, _ = prepare(corpora.folder_per_speaker(root), tmp_path / "prep")
    (row,) = manifest.read_manifest(path)
    assert 0.4 < row.duration < 0.6  # 1.5 s in, the 0.5 s voice out (give or take a trimming frame)


def test_bad_files_are_skipped_and_named(tmp_path, vctk092, caplog):
    spk = vctk092 / "wav48_silence_trimmed" / "p225"
    (spk / "p225_005_mic1.flac").write_bytes(b"this is not audio")
    (spk / "p225_006_mic1.flac").write_bytes(b"")
    sf.write(spk / "p225_007_mic1.flac", np.zeros(4800, np.float32), 48000)  # silent
    sf.write(spk / "p225_008_mic1.flac", synthetic_voice(0.05, 150, seed=3, sample_rate=48000), 48000)  # too short
    items, speakers = corpora.read_corpus("vctk", vctk092, valid=1)
    with caplog.at_level("INFO"):
        path, problems = prepare(items, tmp_path / "prep", speakers=speakers)
    assert len(problems) == 4
    for name, why in (("p225_005", "not a readable"), ("p225_006", "not a readable"), ("p225_007", "silent"),
                      ("p225_008", "shorter than")):
        line = next(p for p in problems if f"{name}_mic1.flac" in p)
        assert why in line
    assert len(manifest.read_manifest(path)) == 14
    assert (path.parent / "skipped.txt").read_text().splitlines() == problems
    assert "4 skipped" in caplog.text and "p225_005_mic1.flac" in caplog.text


def test_cli_prepare_reports_and_strict_fails(tmp_path, vctk092, capsys, caplog):
    from vqspeech import cli

    (vctk092 / "wav48_silence_trimmed" / "p226" / "p226_009_mic1.flac").write_bytes(b"junk")
    argv = ["prepare", "vctk", "--data", str(vctk092), "--out", str(tmp_path / "p"), "--unseen", "", "--valid", "1"]
    assert cli.main(argv) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert "p226_009_mic1.flac: not a readable audio file" in caplog.text
    assert cli.main(argv + ["--strict"]) == 1
    rows = manifest.read_manifest(tmp_path / "p" / "manifest.csv")
    assert {r.split for r in rows} == {"train", "valid"}  # --unseen "": no speaker held out
    assert cli.main(["prepare", "vctk", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "q")]) == 2
    assert "nowhere: not a VCTK folder" in capsys.readouterr().err


def test_rerun_redoes_only_what_is_missing_or_stale(tmp_path, vctk092, caplog):
    items, _ = corpora.read_corpus("vctk", vctk092)
    out = tmp_path / "prep"
    prepare(items, out)
    cached = sorted((out / "audio").rglob("*.flac"))
    assert len(cached) == 14
    old = {p: p.stat().st_mtime_ns for p in cached}
    gone, stale = out / "audio" / "p226" / "p226_001.flac", out / "audio" / "p280" / "p280_002.flac"
    gone.unlink()
    src = vctk092 / "wav48_silence_trimmed" / "p280" / "p280_002_mic1.flac"
    os.utime(src, ns=(stale.stat().st_mtime_ns + 10**9,) * 2)  # the source changed after it was cached
    caplog.clear()
    with caplog.at_level("INFO"):
        path, problems = prepare(items, out)
    assert problems == [] and len(manifest.read_manifest(path)) == 14
    assert "2 prepared now, 12 from the cache" in caplog.text
    for p in cached:
        changed = p.stat().st_mtime_ns != old[p]
        assert changed == (p in (gone, stale)), p


def test_prepare_with_processes_matches_one_process(tmp_path, vctk092):
    items, _ = corpora.read_corpus("vctk", vctk092)
    a, _ = prepare(items, tmp_path / "a", jobs=1)
    b, _ = prepare(items, tmp_path / "b", jobs=2)
    assert a.read_text() == b.read_text()


def test_duplicate_utterance_ids_are_reported(tmp_path):
    root = tmp_path / "c"
    (root / "a").mkdir(parents=True)
    for ext in ("wav", "flac"):
        sf.write(root / "a" / f"x.{ext}", synthetic_voice(0.3, 150, seed=1), 16000)
    _, problems = prepare(corpora.folder_per_speaker(root), tmp_path / "prep")
    assert len(problems) == 1 and "x.wav" in problems[0] and "same speaker and utterance" in problems[0]


# --- the manifest ------------------------------------------------------------------------------------

def test_manifest_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "manifest.csv"
    rows = [manifest.Utterance(f"audio/a/{i}.flac", "a", str(i), 1.0, "train", "hi, \"you\"") for i in range(5)]
    manifest.write_manifest(path, rows)
    before = path.read_bytes()
    calls = {"n": 0}
    real = csv.DictWriter.writerow

    def crash_on_third(self, row):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C half-way through writing
        return real(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        manifest.write_manifest(path, rows[:2] + rows)
    assert path.read_bytes() == before  # the old manifest, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]  # no temporary file left
    assert [r.text for r in manifest.read_manifest(path)] == ['hi, "you"'] * 5


def test_interrupted_prepare_leaves_no_manifest_and_resumes(tmp_path, vctk092, monkeypatch):
    from vqspeech.data import prepare as prep

    items, _ = corpora.read_corpus("vctk", vctk092)
    real, calls = prep.prepare_file, {"n": 0}

    def interrupt_at_sixth(*args):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(prep, "prepare_file", interrupt_at_sixth)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(items, tmp_path / "prep")
    assert not (tmp_path / "prep" / "manifest.csv").exists()
    assert len(list((tmp_path / "prep" / "audio").rglob("*.flac"))) == 5  # whole files only
    assert not list((tmp_path / "prep").rglob("*.tmp"))
    monkeypatch.setattr(prep, "prepare_file", real)
    path, problems = prep.prepare(items, tmp_path / "prep")
    assert problems == [] and len(manifest.read_manifest(path)) == 14


def test_read_manifest_rejects_other_csv(tmp_path):
    (tmp_path / "m.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        manifest.read_manifest(tmp_path / "m.csv")


# --- flite synthesis ---------------------------------------------------------------------------------

def test_read_prompts_plain_and_festvox(tmp_path):
    (tmp_path / "p.txt").write_text("# a comment\nFirst one.\n\n  Second   one. \n")
    (tmp_path / "p.data").write_text('( arctic_a0001 "Author of the danger trail, etc." )\n( b "Two." )\n')
    assert synth.read_prompts(tmp_path / "p.txt") == ["First one.", "Second one."]
    assert synth.read_prompts(tmp_path / "p.data") == ["Author of the danger trail, etc.", "Two."]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.txt"):
        synth.read_prompts(tmp_path / "empty.txt")


def test_parse_psdur():
    assert synth.parse_psdur("pau:0.184 dh:0.228 ax:0.258 \n") == [(0.0, 0.184, "pau"), (0.184, 0.228, "dh"), (0.228, 0.258, "ax")]


def test_missing_flite_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no flite on it
    with pytest.raises(synth.FliteMissing, match="apt-get install flite"):
        synth.synthesize_corpus(tmp_path / "out", ["Hello."], 1, 1)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (sudo apt-get install flite)")
def test_synthesized_corpus_is_vctk_layout_and_resumes(tmp_path):
    out = tmp_path / "mini"
    assert synth.synthesize_corpus(out, ["The cat sat.", "A dog ran home."], n_speakers=2, per_speaker=2) == (4, 0)
    wav = out / "wav48_silence_trimmed" / "slt" / "slt_002_mic1.flac"
    assert sf.info(wav).samplerate == 16000 and sf.info(wav).duration > 0.5
    assert (out / "txt" / "slt" / "slt_002.txt").read_text() == "A dog ran home.\n"
    phones = [line.split("\t") for line in wav.with_name("slt_002.lab").read_text().splitlines()]
    ends = [float(e) for _, e, _ in phones]
    assert phones[0][2] == "pau" and ends == sorted(ends) and abs(ends[-1] - sf.info(wav).duration) < 0.1
    items, speakers = corpora.read_corpus("vctk", out, valid=1, unseen=())
    assert len(items) == 4 and speakers["slt"].gender == "F" and speakers["awb"].accent == "Scottish"
    before = wav.stat().st_mtime_ns
    assert synth.synthesize_corpus(out, ["The cat sat.", "A dog ran home."], n_speakers=2, per_speaker=2) == (0, 4)
    assert wav.stat().st_mtime_ns == before
