"""The recipes' run.sh scripts: the mini recipe end to end, the flite-missing hint, VCTK's download stage
(from a local archive: the tests never reach the network), VCC 2016's prepare stage, option parsing."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, synthetic_voice
from test_corpora import make_vctk
from vqspeech.data import corpora
from vqspeech.data.manifest import read_manifest

RECIPES = REPO / "recipes"


def run(script: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(["bash", str(RECIPES / script), "--python", sys.executable, *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (sudo apt-get install flite)")
def test_mini_recipe_end_to_end_with_debug_overlay(tmp_path):
    dirs = ["--data", str(tmp_path / "corpus"), "--prepared", str(tmp_path / "prepared"), "--run-dir", str(tmp_path / "run")]
    done = run("mini/run.sh", "--debug", "true", *dirs)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_manifest(tmp_path / "prepared" / "manifest.csv")
    # debug: 5 speakers x 6 prompts; kal held out whole; 1 validation utterance per training speaker
    assert len(rows) == 30
    assert {s: sum(r.split == s for r in rows) for s in ("train", "valid", "unseen")} == {"train": 20, "valid": 4, "unseen": 6}
    assert {r.speaker for r in rows if r.split == "unseen"} == {"kal"}
    assert all(r.text for r in rows)
    assert (tmp_path / "run" / "checkpoint-6.pt").exists()
    # Stage 3 went through the codec's command line: wav -> .vqs -> wav.
    (decoded,) = (tmp_path / "run" / "roundtrip").glob("*.decoded.wav")
    assert sf.info(decoded).frames == 8000  # --seconds 0.5 of the held-out file, decoded at 16 kHz
    assert decoded.name.split(".")[0] in {r.utterance for r in rows if r.split == "valid"}
    assert len(list((tmp_path / "run" / "roundtrip").glob("*.vqs"))) == 1
    assert "bit/s" in done.stdout
    # Again: synthesis and prepare find their work done.
    again = run("mini/run.sh", "--debug", "true", *dirs, "--stop-stage", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 made now, 30 already there" in again.stdout
    assert "0 prepared now, 30 from the cache" in again.stderr


def test_mini_recipe_without_flite_says_how_to_install(tmp_path):
    # A PATH holding every tool of this machine except flite.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = Path(folder) / name
            if name != "flite" and not (bin_dir / name).exists() and os.access(target, os.X_OK) and target.is_file():
                (bin_dir / name).symlink_to(target)
    done = run("mini/run.sh", "--data", str(tmp_path / "corpus"), "--stop-stage", "0", env={"PATH": str(bin_dir)})
    assert done.returncode != 0
    assert "flite: not found on PATH" in done.stderr and "apt-get install flite" in done.stderr
    assert not (tmp_path / "corpus" / "wav48_silence_trimmed").exists()


def make_zip(tmp_path: Path) -> tuple[Path, str]:
    """A small archive in VCTK 0.92's zip layout (files at the top, no enclosing folder) and its SHA-256."""
    tree = make_vctk(tmp_path / "tree", "0.92", seconds=0.3)
    archive = tmp_path / "VCTK-Corpus-0.92.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(tree.rglob("*")):
            z.write(p, p.relative_to(tree))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_vctk_download_stage_checks_checksum_and_unzips(tmp_path):
    archive, sha = make_zip(tmp_path)
    data = tmp_path / "dl" / "VCTK-Corpus-0.92"
    common = ["--url", archive.as_uri(), "--data", str(data)]
    bad = run("vctk/run.sh", *common, "--sha256", "0" * 64, "--stop-stage", "0")
    assert bad.returncode != 0 and "SHA-256 is not" in bad.stderr
    assert not data.exists()
    good = run("vctk/run.sh", *common, "--sha256", sha, "--stop-stage", "0")
    assert good.returncode == 0, good.stderr[-3000:]
    assert (data / ".complete").exists() and not (data.parent / "VCTK-Corpus-0.92.unzip").exists()
    # What stage 1 reads (its run.sh path is the same `vqspeech prepare` the mini recipe runs end to end).
    items, speakers = corpora.read_corpus("vctk", data)
    assert len(items) == 14 and {it.speaker for it in items if it.split == "unseen"} == {"p226"}  # the fixed list
    assert speakers["p280"].accent == "French"
    again = run("vctk/run.sh", *common, "--sha256", sha, "--stop-stage", "0")
    assert again.returncode == 0 and "already downloaded" in again.stderr


def test_vcc2016_prepare_stage(tmp_path):
    root = tmp_path / "train"
    for s, spk in enumerate(["SF1", "TM1"]):
        (root / spk).mkdir(parents=True)
        for i in range(1, 15):
            sf.write(root / spk / f"1000{i:02d}.wav", synthetic_voice(0.3, 120 + 80 * s, seed=s * 20 + i), 16000)
    done = run("vcc2016/run.sh", "--data", str(root), "--prepared", str(tmp_path / "prep"), "--stage", "0", "--stop-stage", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_manifest(tmp_path / "prep" / "manifest.csv")
    assert len(rows) == 28
    assert sorted({r.utterance for r in rows if r.split == "valid"}) == [f"1000{i:02d}" for i in range(3, 15)]
    missing = run("vcc2016/run.sh", "--data", str(tmp_path / "nowhere"), "--prepared", str(tmp_path / "p2"), "--stop-stage", "0")
    assert missing.returncode != 0 and "nowhere: no such folder" in missing.stderr


def test_options_are_checked_and_help_lists_stages(tmp_path):
    bad = run("vcc2016/run.sh", "--no-such-option", "1")
    assert bad.returncode == 2 and "unknown option --no-such-option" in bad.stderr
    assert "needs a value" in run("vcc2016/run.sh", "--stage").stderr
    help_ = run("vctk/run.sh", "--help")
    assert help_.returncode == 0 and "download VCTK 0.92" in help_.stdout and "Stages:" in help_.stdout
    no_ckpt = run("vcc2016/run.sh", "--run-dir", str(tmp_path / "empty"), "--stage", "2", "--stop-stage", "2")
    assert no_ckpt.returncode != 0 and "no checkpoint in" in no_ckpt.stderr


def test_latest_checkpoint_orders_steps_numerically(tmp_path):
    for step in (9, 10, 100, 11):
        (tmp_path / f"checkpoint-{step}.pt").touch()
    script = f'stage=0; stop_stage=0; conf=; overlay=; python={sys.executable}; source {RECIPES}/utils/common.sh; latest_checkpoint {tmp_path}'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert out.stdout.strip() == str(tmp_path / "checkpoint-100.pt"), out.stderr


def test_evaluate_and_convert_stage_loops(tmp_path, manifest):
    """The shell loops of the evaluate and convert stages, with the codec commands stubbed by copies, and
    the scoring script on their output (a copy scores as perfect)."""
    stub = ('vqspeech() { echo "$1" >> calls; case $1 in encode|decode) cp "$2" "$4" ;; convert) cp "$2" "$6" ;; esac; }')
    script = (f'stage=0; stop_stage=0; conf=; overlay=; python={sys.executable}; source {RECIPES}/utils/common.sh; {stub}; '
              f'evaluate_resynthesis {manifest} valid 1 model.pt eval; convert_pairs {manifest} valid alice 1 bob,alice model.pt conv; '
              f'convert_pairs {manifest} valid alice 1 bob,alice model.pt conv')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    # 2 speakers x 1 held-out utterance: encode + decode each; 1 source utterance x 2 targets converted,
    # once: the second conversion run finds its files made.
    assert (tmp_path / "calls").read_text().split() == ["encode", "decode"] * 2 + ["convert"] * 2
    assert sorted(p.relative_to(tmp_path / "conv").as_posix() for p in (tmp_path / "conv").rglob("*.wav")) == [
        "alice-alice/alice_002.wav", "alice-bob/alice_002.wav"]
    with open(tmp_path / "eval" / "scores.csv") as f:
        scores = list(csv.DictReader(f))
    assert [s["utterance"] for s in scores] == ["alice_002", "bob_002"]
    assert all(float(s["stoi"]) > 0.99 and float(s["mel_distance"]) < 1e-6 for s in scores)
    assert "2 utterances; mean" in done.stdout


def test_parallel_decoder_chain_and_latest_model(tmp_path):
    """recipes/utils/common.sh: each config of the chain fine-tunes the previous run's last checkpoint, in a
    subfolder named after it; latest_model picks the end of the chain (the `vqspeech` command is stubbed)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint-250.pt").touch()
    (run_dir / "checkpoint-2250.pt").touch()
    confs = []
    for name in ("parallel", "parallel-convert", "parallel-joint"):
        confs.append(tmp_path / f"{name}.yaml")
        confs[-1].touch()
    script = f"""
stage=0; stop_stage=0
source {RECIPES / 'utils' / 'common.sh'}
vqspeech() {{  # stub: log the call, write the run's checkpoint
    local d; d=$(printf '%s\\n' "$@" | sed -n 's/^train.run_dir=//p')
    echo "$*" >> {tmp_path / 'calls.txt'}; mkdir -p "$d"; touch "$d/checkpoint-1000.pt"
}}
train_parallel {tmp_path / 'm.csv'} {run_dir} {' '.join(map(str, confs))}
latest_model {run_dir}
"""
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    par = run_dir / "parallel-on-2250"
    assert [c.split("--base-model ")[1].split()[0] for c in calls] == [
        str(run_dir / "checkpoint-2250.pt"), str(par / "checkpoint-1000.pt"), str(par / "convert" / "checkpoint-1000.pt")]
    assert [c.split("train.run_dir=")[1].split()[0] for c in calls] == [str(par), str(par / "convert"), str(par / "convert" / "joint")]
    assert done.stdout.strip() == str(par / "convert" / "joint" / "checkpoint-1000.pt")


def test_anyvoice_recipe_prepares_combines_trains_and_exports(tmp_path):
    """The any-voice chain end to end on toy corpora and the debug model: a table-voice base becomes a vector-voice
    model file (real resemblyzer d-vectors; a few seconds)."""
    from test_any_voice import write_speechocean

    from vqspeech.config import load_config
    from vqspeech import checkpoint
    from vqspeech.train.loop import Trainer

    vcc = tmp_path / "vcc"
    for s, spk in enumerate(["SF1", "TM1"]):
        (vcc / spk).mkdir(parents=True)
        for i in range(1, 15):
            sf.write(vcc / spk / f"1000{i:02d}.wav", synthetic_voice(0.3, 120 + 80 * s, seed=s * 20 + i), 16000)
    so = tmp_path / "so"
    so.mkdir()
    write_speechocean(so, {"0001": (21, "f"), "0002": (8, "m"), "0094": (6, "m")})
    dirs = ["--vcc", str(vcc), "--speechocean", str(so), "--prepared", str(tmp_path / "prep"), "--run-dir", str(tmp_path / "run")]
    prep = run("anyvoice/run.sh", *dirs, "--stop-stage", "1")
    assert prep.returncode == 0, prep.stderr[-3000:]
    rows = read_manifest(tmp_path / "prep" / "combined" / "manifest.csv")
    assert {r.corpus for r in rows} == {"vcc2016", "speechocean762"} and len(rows) == 28 + 9
    assert {r.speaker for r in rows if r.split == "unseen"} == {"so0094"}
    no_base = run("anyvoice/run.sh", *dirs, "--stage", "2")
    assert no_base.returncode != 0 and "--base-model: give the table-voice model" in no_base.stderr

    base = Trainer(load_config(REPO / "recipes" / "conf" / "debug.yaml", overrides={
        "data": {"manifest": str(tmp_path / "prep" / "vcc2016" / "manifest.csv")},
        "train": {"run_dir": str(tmp_path / "base"), "steps": 2, "checkpoint_every": 2, "val_every": 2, "eval_every": 0}}))
    base.fit()
    overlay = REPO / "recipes" / "conf" / "debug.yaml"
    done = run("anyvoice/run.sh", *dirs, "--stage", "2", "--base-model", str(checkpoint.latest_checkpoint(tmp_path / "base")),
               "--overlay", str(overlay))
    assert done.returncode == 0, done.stderr[-3000:]
    model = checkpoint.load_model(tmp_path / "run" / "model.pt")
    assert model.config.voice == "vector" and model.speaker_names == ["SF1", "TM1", "so0001", "so0002"]

    # The prior over that model's codes (recipes/prior), installed beside it: encode then range-codes under it,
    # conditioned on the voice vector each file carries.
    model_path = tmp_path / "run" / "model.pt"
    prior_args = ["--model", str(model_path), "--manifest", str(tmp_path / "prep" / "combined" / "manifest.csv"),
                  "--run-dir", str(tmp_path / "prior"), "--conf", str(REPO / "recipes" / "prior" / "conf" / "debug.yaml")]
    trained = run("prior/run.sh", *prior_args, "--install", "yes")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (tmp_path / "prior" / "codes.npz").exists() and (tmp_path / "run" / "model.prior.pt").exists()
    from vqspeech.codec import api, bitstream

    loaded = checkpoint.load(model_path)
    data = api.encode_audio(loaded, synthetic_voice(1.0, 150, seed=3))
    parsed = bitstream.read(data)
    assert parsed.header.version == 4 and parsed.header.voice is not None
    plain = bitstream.read(api.encode_audio(loaded, synthetic_voice(1.0, 150, seed=3), prior=False))
    np.testing.assert_array_equal(api.symbols(loaded, parsed)[0], plain.codes)
    # A frame prior from the same cached codes, conf/frame.yaml laid on top as the default model's was made.
    (tmp_path / "frame").mkdir()
    shutil.copy(tmp_path / "prior" / "codes.npz", tmp_path / "frame" / "codes.npz")
    # Its time-shifted (and sped-up) copies of the training split are extracted beside the cached codes.
    framed = run("prior/run.sh", "--model", str(model_path), "--run-dir", str(tmp_path / "frame"), "--manifest",
                 str(tmp_path / "prep" / "combined" / "manifest.csv"), "--conf",
                 str(REPO / "recipes" / "prior" / "conf" / "debug.yaml"), "--overlay",
                 str(REPO / "recipes" / "prior" / "conf" / "frame.yaml"), "--set", "train.steps=10", "--stop-stage", "0")
    assert framed.returncode == 0, framed.stderr[-3000:]
    from vqspeech.codec import entropy

    assert entropy.load_prior(tmp_path / "frame" / "prior.pt", loaded).exact.meta["kind"] == "frame"
    assert (tmp_path / "frame" / "codes.shift32.npz").exists()

    # The WaveNet of that model trained alone (recipes/wavenet), reading its parallel decoder's rendering: the export
    # keeps the codes (same fingerprint) and decodes with either decoder.
    wn = run("wavenet/run.sh", "--model", str(model_path), "--manifest", str(tmp_path / "prep" / "combined" / "manifest.csv"),
             "--run-dir", str(tmp_path / "wn"), "--overlay", str(overlay), "--set", "train.steps=2", "--stop-stage", "1")
    assert wn.returncode == 0, wn.stderr[-3000:]
    from vqspeech.models.vqvae import model_fingerprint

    trained_wn = checkpoint.load_model(tmp_path / "wn" / "model.pt")
    assert trained_wn.config.decoder.parallel_input and model_fingerprint(trained_wn) == model_fingerprint(loaded)
    wav = synthetic_voice(0.2, 150, seed=4)
    assert trained_wn.decode(trained_wn.encode(wav), None, decoder="autoregressive").shape == wav.shape

    # The same WaveNet training packed for a GPU machine (recipes/wavenet/gpu.sh): a compact copy of the corpus with
    # its caches and relative paths, the model beside it; stage 1 (what runs there) trains from the pack alone and
    # leaves the last checkpoint in $OUT. Wheels are not fetched here (--wheels-too false).
    pack = tmp_path / "gpu"
    packed = run("wavenet/gpu.sh", "--model", str(model_path), "--manifest", str(tmp_path / "prep" / "combined" / "manifest.csv"),
                 "--pack", str(pack), "--per-speaker", "2", "--valid", "1", "--wheels-too", "false")
    assert packed.returncode == 0, packed.stderr[-3000:]
    rows = read_manifest(pack / "data" / "manifest.csv")
    assert sorted(r.speaker for r in rows if r.split == "train") == sorted(["SF1", "TM1", "so0001", "so0002"] * 2)
    assert {r.split for r in rows} <= {"train", "valid"} and len([r for r in rows if r.split == "valid"]) <= 4
    assert all(Path(r.path).is_relative_to(pack) and Path(r.path).exists() for r in rows)
    assert (pack / "model.pt").exists() and not list((pack / "whl").glob("*.whl"))
    trained_gpu = run("wavenet/gpu.sh", "--stage", "1", "--stop-stage", "1", "--pack", str(pack), "--overlay", str(overlay),
                      "--steps", "2", "--checkpoint-every", "2", "--minutes", "3", env={"OUT": str(tmp_path / "out")})
    assert trained_gpu.returncode == 0, trained_gpu.stderr[-3000:]
    brought_back = checkpoint.load_checkpoint(tmp_path / "out" / "wavenet-gpu.pt")
    assert brought_back["step"] == 2 and brought_back["config"]["model"]["decoder"]["parallel_input"]
