"""Training loop: checkpoints rebuild the model, resume continues exactly, the CLI trains, DDP agrees."""

import os
import subprocess
import sys

import pytest
import torch

from vqspeech.config import load_config
from vqspeech import checkpoint
from vqspeech.train.loop import Trainer
from tests.conftest import DEBUG_OVERLAY, REPO


def debug_config(manifest, run_dir, steps):
    return load_config(DEBUG_OVERLAY, overrides={
        "data": {"manifest": str(manifest)},
        "train": {"run_dir": str(run_dir), "steps": steps, "checkpoint_every": 3, "eval_every": 0, "val_every": 3},
    })


def test_checkpoint_rebuilds_model_from_file_alone(manifest, tmp_path):
    from vqspeech.data.manifest import Speaker, write_speakers

    write_speakers(manifest.parent / "speakers.csv", [Speaker("alice", "F", "English"), Speaker("bob", "M", "Scottish")])
    trainer = Trainer(debug_config(manifest, tmp_path / "run", 3))
    trainer.fit()
    path = checkpoint.latest_checkpoint(tmp_path / "run")
    assert path.name == "checkpoint-3.pt"
    model = checkpoint.load_model(path)
    assert model.speaker_names == ["alice", "bob"]
    assert model.speaker_info["bob"] == {"gender": "M", "accent": "Scottish", "region": "", "age": ""}
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)
    assert not model.training
    # The speakers' pitch ranges were measured from the data: alice's synthetic voice is higher.
    assert model.speaker_pitch("alice")[0] > model.speaker_pitch("bob")[0] + 0.5


def test_resume_continues_exactly(manifest, tmp_path):
    straight = Trainer(debug_config(manifest, tmp_path / "a", 6))
    straight.fit()
    first = Trainer(debug_config(manifest, tmp_path / "b", 6))
    first.config.train.steps = 3  # stop early, as a killed run would
    first.fit()
    resumed = Trainer(debug_config(manifest, tmp_path / "b", 6), resume=True)
    assert resumed.step == 3
    resumed.fit()
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)


def test_resume_refuses_a_different_model(manifest, tmp_path):
    Trainer(debug_config(manifest, tmp_path / "run", 3)).fit()
    config = debug_config(manifest, tmp_path / "run", 6)
    config.model.decoder.layers = 2
    with pytest.raises(checkpoint.CheckpointError, match="model config differs"):
        Trainer(config, resume=True)
    with pytest.raises(ValueError, match="--resume"):  # a fresh run into the same folder would mix the two
        Trainer(debug_config(manifest, tmp_path / "run", 3))


def test_interrupted_save_leaves_no_broken_file(tmp_path, monkeypatch):
    checkpoint.save_checkpoint(tmp_path / "c.pt", {"step": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(tmp_path / "c.pt", {"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert checkpoint.load_checkpoint(tmp_path / "c.pt")["step"] == 1


def test_load_refuses_non_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="bad.pt"):
        checkpoint.load_model(bad)
    torch.save({"anything": 1}, tmp_path / "other.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a vqspeech model"):
        checkpoint.load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(checkpoint.CheckpointError, match="text.pt: not a vqspeech model file .not a PyTorch file"):
        checkpoint.load_model(tmp_path / "text.pt")
    torch.save({"format": checkpoint.FORMAT, "config": {}}, tmp_path / "partial.pt")
    with pytest.raises(checkpoint.CheckpointError, match="partial.pt: a damaged vqspeech model file .missing speakers, model"):
        checkpoint.load_model(tmp_path / "partial.pt")


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_is_refused_without_the_unsafe_advice(tmp_path, capsys):
    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.load_model(tmp_path / "evil.pt")
    assert "could run code" in str(e.value) and "weights_only" not in str(e.value)
    assert "this must never run" not in capsys.readouterr().out


def test_cli_train_writes_checkpoint_and_logs(manifest, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vqspeech.cli", "train", "--config", str(DEBUG_OVERLAY),
           "--set", f"data.manifest={manifest}", "--set", f"train.run_dir={run}", "--set", "train.eval_every=6"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "checkpoint-6.pt").exists()
    assert (run / "valid.csv").read_text().count("\n") == 3  # header + steps 3 and 6
    assert "stoi" in (run / "eval.csv").read_text()
    assert list((run / "tb").glob("events.out.tfevents.*"))


def test_cli_reports_missing_manifest(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vqspeech.cli", "train", "--config", str(DEBUG_OVERLAY),
                             "--set", f"data.manifest={tmp_path}/nope.csv"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert "nope.csv: no such manifest" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_removes_the_temporaries_a_killed_writer_left(manifest, tmp_path):
    from vqspeech.train.loop import Trainer

    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint-6.pt.0123abcd.tmp").write_bytes(b"half a checkpoint")  # what kill -9 mid-save leaves
    (run / ".notes.tmp").write_text("not ours")
    Trainer(load_config(DEBUG_OVERLAY, overrides={"data": {"manifest": str(manifest)}, "train": {"run_dir": str(run)}}))
    assert sorted(p.name for p in run.glob(".*")) == [".notes.tmp"]


def test_an_exported_model_with_damaged_weights_is_refused(tmp_path):
    from tests.conftest import tiny_codec_model
    from vqspeech.config import to_dict

    model, config = tiny_codec_model(0)
    checkpoint.save_checkpoint(tmp_path / "run.pt", {"config": to_dict(config), "speakers": model.speaker_names, "step": 1,
                                                     "cpu_seconds": 1.0, "model": model.state_dict()})
    checkpoint.export_model(tmp_path / "run.pt", tmp_path / "model.pt")
    checkpoint.load_model(tmp_path / "model.pt")  # intact: loads
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    name = next(k for k in ckpt["model"] if k.endswith("weight"))
    ckpt["model"][name].view(-1)[0] += 1  # one value changed, the recorded checksum kept
    torch.save(ckpt, tmp_path / "damaged.pt")
    with pytest.raises(checkpoint.CheckpointError, match="damaged.pt: damaged: its weights do not match"):
        checkpoint.load_model(tmp_path / "damaged.pt")
