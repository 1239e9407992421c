"""vqspeech.fileio: atomic writes with a plain file's permissions, nothing left behind on failure."""

import os
import stat

import numpy as np
import pytest
import torch

from vqspeech import audio
from vqspeech.codec import api
from vqspeech.data import manifest
from vqspeech.fileio import atomic_open, atomic_path, temp_path
from vqspeech import checkpoint


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_permissions_match_a_plainly_created_file(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    open(plain, "w").close()
    with atomic_path(tmp_path / "new.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_open(tmp_path / "new.txt") as f:
        f.write("x")
    assert mode(plain) == 0o666 & ~umask  # what the comparison rests on
    assert mode(tmp_path / "new.bin") == mode(plain)
    assert mode(tmp_path / "new.txt") == mode(plain)


def test_callers_write_with_plain_permissions(tmp_path, umask):
    """The package's writers, which used mkstemp's owner-only 0o600 before."""
    plain = 0o666 & ~umask
    audio.save(tmp_path / "a.wav", np.zeros(160, np.float32))
    checkpoint.save_checkpoint(tmp_path / "m.pt", {"step": 1})
    api.write_atomic(tmp_path / "x.vqs", b"data")
    manifest.write_manifest(tmp_path / "manifest.csv", [manifest.Utterance("a.wav", "s", "u", 0.01)])
    for name in ("a.wav", "m.pt", "x.vqs", "manifest.csv"):
        assert mode(tmp_path / name) == plain, name
    assert torch.load(tmp_path / "m.pt", weights_only=True)["step"] == 1


def test_exception_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(target) as f:
        f.write("half of the new")
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_success_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.txt.") and tmp.exists()
        assert target.read_text() == "old"  # untouched until the block ends
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    target = tmp_path / "out.vqs"
    target.write_bytes(b"old")
    entered = False
    with pytest.raises(FileExistsError, match=r"out\.vqs: exists \(use --force to overwrite\)"), \
            atomic_path(target, overwrite=False):
        entered = True
    assert not entered and target.read_bytes() == b"old"
    with pytest.raises(FileExistsError, match="--force"):
        api.write_atomic(target, b"new")
    wav = target.with_suffix(".wav")
    audio.save(wav, np.zeros(16, np.float32))
    before = wav.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        audio.save(wav, np.ones(16, np.float32) / 2, force=False)
    assert target.read_bytes() == b"old" and wav.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.vqs", "out.wav"]


def test_overwrite_false_refuses_a_file_that_appears_meanwhile(tmp_path):
    target = tmp_path / "out.vqs"
    with pytest.raises(FileExistsError, match="--force"), atomic_path(target, overwrite=False) as tmp:
        tmp.write_bytes(b"ours")
        target.write_bytes(b"theirs")  # another process got there first
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.vqs"]


def test_parent_folders_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "c.txt"
    with atomic_open(target) as f:
        f.write("x\n")
    assert target.read_text() == "x\n"
    with atomic_path(tmp_path / "d" / "e.bin", overwrite=False) as tmp:
        tmp.write_bytes(b"y")
    assert (tmp_path / "d" / "e.bin").read_bytes() == b"y"


def test_temp_path_is_removed_and_names_are_unique(tmp_path):
    beside = tmp_path / "x.flac"
    with temp_path(beside, suffix=".wav") as a, temp_path(beside, suffix=".wav") as b:
        assert a != b and a.exists() and b.exists() and a.suffix == ".wav"
    assert not list(tmp_path.iterdir())
