"""The prior over the codes: the token layout, the exact twin, the range coder under it (lossless, golden bytes,
thread-independent, corruption detected), the codec with and without it, its errors, and its training."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO, synthetic_voice
from vqspeech.codec import api, bitstream, entropy
from vqspeech.config import PriorConfig, PriorModelConfig, to_dict
from vqspeech.data.codes import TokenLayout, split_tokens, tokens_of
from vqspeech.models.prior import CodePrior
from vqspeech.models.prior_exact import ExactPrior

LAYOUT = TokenLayout(codebook_size=16, pitch_levels=8, pitch_frames=4)


def tiny_prior(seed: int = 0, layout: TokenLayout = LAYOUT, voice_dim: int = 8, window: int = 12) -> CodePrior:
    torch.manual_seed(seed)
    prior = CodePrior(PriorModelConfig(dim=16, layers=2, heads=2, ff_dim=32, window=window, dropout=0.0), layout, voice_dim)
    with torch.no_grad():  # larger weights than the init's, so that predictions differ from position to position
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return prior.eval()


def stream_of(n_frames: int, seed: int, layout: TokenLayout = LAYOUT) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.repeat(rng.integers(0, layout.codebook_size, n_frames * layout.pitch_frames // 2), 2)
    return tokens_of(codes, rng.integers(0, layout.pitch_levels, n_frames), layout)


def assert_rounding_only(exact_logits: np.ndarray, float_logits: np.ndarray) -> None:
    """An exact twin's integer logits (at 1/32 nat) differ from its float model's by the rounding of weights and
    activations, nothing more (masked positions of the float logits are not compared)."""
    gap = np.abs(exact_logits / 32 - float_logits)[np.isfinite(float_logits)]
    assert gap.max() < 0.15 and gap.mean() < 0.05


def test_tokens_interleave_pitch_then_codes_and_split_back():
    codes, pitch = np.arange(8) % 16, np.array([3, 5])
    tokens = tokens_of(codes, pitch, LAYOUT)
    assert tokens.tolist() == [16 + 3, 0, 1, 2, 3, 16 + 5, 4, 5, 6, 7]
    back_codes, back_pitch = split_tokens(tokens, LAYOUT)
    assert back_codes.tolist() == codes.tolist() and back_pitch.tolist() == pitch.tolist()
    with pytest.raises(ValueError, match="pitch symbols"):
        tokens_of(codes[:7], pitch, LAYOUT)


def test_the_exact_twin_predicts_what_the_float_prior_does_in_pieces_of_any_size():
    prior = tiny_prior()
    tokens = stream_of(12, 0)
    voice = torch.randn(8)
    inputs = np.concatenate([[prior.start_token], tokens[:-1]])
    with torch.no_grad():
        float_logits = prior(torch.from_numpy(inputs)[None], voice[None])[0].numpy()
    exact = ExactPrior.freeze(prior)
    whole = exact.feed(exact.start(voice.numpy()), inputs)
    assert_rounding_only(whole, float_logits)
    state, pieces = exact.start(voice.numpy()), []
    for size in (1, 5, 2, 17, 100):  # windows cross the pieces' boundaries
        pieces.append(exact.feed(state, inputs[sum(len(p) for p in pieces):][:size]))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_range_coding_is_lossless_and_beats_packing_on_predictable_codes():
    exact = ExactPrior.freeze(tiny_prior())
    prior = entropy.Prior(exact, "0" * 16, "abcd0123", {})
    voice = np.linspace(-1, 1, 8).astype(np.float32)
    for seed, n in ((0, 0), (1, 1), (2, 40)):
        tokens = stream_of(n, seed)
        words = entropy.encode_tokens(prior, tokens, voice)
        np.testing.assert_array_equal(entropy.decode_tokens(prior, words, len(tokens), voice), tokens)
    # What the coder spends is what the prior says, to a few bits per stream.
    tokens = stream_of(40, 2)
    spent = 32 * len(entropy.encode_tokens(prior, tokens, voice))
    assert abs(spent - entropy.token_bits(prior, tokens, voice).sum()) < 64


def test_a_long_stream_codes_in_pieces_with_the_context_carried_across(monkeypatch):
    """Pieces of CHUNK tokens (7 here, so that pieces and windows cross): the same words as in one piece, and the
    stream decodes; the coder's state is the window's keys and values, whatever the length."""
    prior = entropy.Prior(ExactPrior.freeze(tiny_prior()), "0" * 16, "abcd0123", {})
    voice = np.full(8, 0.1, np.float32)
    tokens = stream_of(60, 5)
    whole = entropy.encode_tokens(prior, tokens, voice)
    monkeypatch.setattr(entropy, "CHUNK", 7)
    np.testing.assert_array_equal(entropy.encode_tokens(prior, tokens, voice), whole)
    np.testing.assert_array_equal(entropy.decode_tokens(prior, whole, len(tokens), voice), tokens)
    stream = prior.exact.stepper(voice)
    for t in np.concatenate([[prior.exact.start_token], tokens[:-1]]):
        stream.next(int(t))
    assert stream.keys.shape[2] == prior.exact.window  # a ring of one window, not the stream


def golden_prior() -> entropy.Prior:
    """An exact prior made from integers alone (no float training, no torch init): the same everywhere."""
    template = ExactPrior.freeze(tiny_prior())
    rng = np.random.default_rng(1234)
    tensors = {}
    for name, v in template.tensors.items():
        if name.endswith("_exp"):
            tensors[name] = v
        elif name.endswith("norm"):
            tensors[name] = np.full(v.shape, 256, np.int64)
        else:
            tensors[name] = rng.integers(-400, 400, v.shape)
    meta = {**template.meta, "shifts": {name: 10 for name in template.meta["shifts"]}}
    return entropy.Prior(ExactPrior(tensors, meta), "0" * 16, "00000000", {})


# Words and the start of their sha256, from the first run of this code. A change here means a file written by one
# version of vqspeech no longer decodes with another: bump the format version instead.
GOLDEN = (23, "a0711b2354ddb6ae")


def test_golden_bytes():
    prior = golden_prior()
    words = entropy.encode_tokens(prior, stream_of(30, 7), np.linspace(-0.5, 0.5, 8).astype(np.float32))
    digest = hashlib.sha256(np.asarray(words, "<u4").tobytes()).hexdigest()
    assert (len(words), digest[:16]) == GOLDEN


def test_the_same_bytes_under_one_and_two_threads():
    script = ("import sys, hashlib, numpy as np; sys.path.insert(0, '.'); from tests.test_prior import *; "
              "p = golden_prior(); w = entropy.encode_tokens(p, stream_of(300, 3), np.ones(8, np.float32) / 4); "
              "print(hashlib.sha256(np.asarray(w, '<u4').tobytes()).hexdigest())")
    outs = set()
    for threads in ("1", "2"):
        env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        import os

        env = {**os.environ, **env}
        outs.add(subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


def test_the_compiled_step_computes_what_feed_does():
    exact = ExactPrior.freeze(tiny_prior(window=6))
    voice = np.full(8, 0.25, np.float32)
    inputs = np.concatenate([[exact.start_token], stream_of(8, 4)[:-1]])
    stream = exact.stepper(voice)
    stepped = np.stack([stream.next(int(t)) for t in inputs])  # well past the window: the rings wrap
    fed = exact.feed(exact.start(voice), inputs)
    np.testing.assert_array_equal(stepped, fed)
    # What the coder runs per token (embedding, step and frequency table in one compiled call), and its fallback
    # without the kernel, give the frequencies of feed's logits.
    want = np.stack([exact.frequencies_of(logits, t) for t, logits in enumerate(fed)])
    fused, fallback = exact.stepper(voice), exact.stepper(voice)
    fallback.kernel = None
    np.testing.assert_array_equal(np.stack([fused.next_frequencies(int(t)) for t in inputs]), want)
    np.testing.assert_array_equal(np.stack([fallback.next_frequencies(int(t)) for t in inputs]), want)
    np.testing.assert_array_equal(exact.frequencies_along(exact.start(voice), inputs, 0), want)  # what encoding runs


def test_short_streams_decode_without_the_compiled_step(monkeypatch):
    """Below COMPILED_FROM_TOKENS decoding steps in NumPy (no kernel to load); either way the same tokens come out."""
    prior = entropy.Prior(ExactPrior.freeze(tiny_prior()), "0" * 16, "abcd0123", {})
    voice, tokens = np.full(8, 0.1, np.float32), stream_of(12, 6)
    words = entropy.encode_tokens(prior, tokens, voice)
    made = []
    stepper = type(prior.exact).stepper
    monkeypatch.setattr(type(prior.exact), "stepper", lambda self, v, compiled=True: made.append(compiled) or stepper(self, v, compiled))
    for threshold, compiled in ((len(tokens) + 1, False), (len(tokens), True)):
        monkeypatch.setattr(entropy, "COMPILED_FROM_TOKENS", threshold)
        np.testing.assert_array_equal(entropy.decode_tokens(prior, words, len(tokens), voice), tokens)
        assert made.pop() is compiled


# --- with a codec model: train-prior, the .vqs v4 round trip, the commands, the errors --------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny codec model file, its codes of a tiny corpus, and a prior trained on them for a few steps."""
    from tests.conftest import tiny_codec_model
    from vqspeech.checkpoint import save_checkpoint
    from vqspeech.data import corpora
    from vqspeech.data.prepare import prepare
    from vqspeech.train.prior_loop import PriorTrainer
    import soundfile as sf

    root = tmp_path_factory.mktemp("prior")
    for s, (name, f0) in enumerate([("alice", 210.0), ("bob", 110.0)]):
        (root / "corpus" / name).mkdir(parents=True)
        for i in range(3):
            sf.write(root / "corpus" / name / f"{name}_{i}.wav", synthetic_voice(1.5, f0, seed=10 * s + i), 16000)
    manifest, _ = prepare(corpora.folder_per_speaker(root / "corpus", valid_per_speaker=1), root / "prepared")
    model, config = tiny_codec_model(0)
    model_path = root / "tiny.pt"
    save_checkpoint(model_path, {"config": to_dict(config), "speakers": model.speaker_names, "step": 0, "model": model.state_dict()})
    prior_config = PriorConfig(model=PriorModelConfig(dim=16, layers=1, heads=2, ff_dim=32, window=16, dropout=0.0))
    t = prior_config.train
    t.manifest, t.run_dir, t.seq_len, t.batch_size, t.steps, t.lr, t.warmup_steps = str(manifest), str(root / "run"), 40, 8, 60, 3e-2, 5
    t.val_every = t.checkpoint_every = 30
    trainer = PriorTrainer(prior_config, model_path)
    before = trainer.validate()
    trainer.fit()
    return dict(root=root, model_path=model_path, trainer=trainer, before=before, config=prior_config, manifest=manifest)


def test_train_prior_learns_and_resumes(trained):
    from vqspeech.train.prior_loop import PriorTrainer

    trainer, before = trained["trainer"], trained["before"]
    after = trainer.validate()
    key = next(k for k in after if k.endswith("bits/code"))
    assert after[key] < before[key] - 0.5  # from about log2(K) down: the codes are predictable, and it learned so
    assert (trained["root"] / "run" / "valid.csv").read_text().count("\n") == 3  # header + 2 validations
    resumed = PriorTrainer(trained["config"], trained["model_path"], resume=True)
    assert resumed.step == 60 and torch.equal(resumed.prior.head.weight, trainer.prior.head.weight)


def test_time_shifts_and_speeds_add_training_streams_of_the_same_audio(trained, tmp_path):
    import copy
    import shutil

    from vqspeech import checkpoint
    from vqspeech.data.codes import CodeCorpus
    from vqspeech.train.prior_loop import PriorTrainer

    codes = tmp_path / "codes.npz"
    shutil.copy(trained["root"] / "run" / "codes.npz", codes)
    config = copy.deepcopy(trained["config"])
    hop = checkpoint.load(trained["model_path"]).config.hop
    t = config.train
    t.codes, t.run_dir, t.time_shifts, t.speed_factors = str(codes), str(tmp_path / "run"), (hop // 2,), (1.25,)
    trainer = PriorTrainer(config, trained["model_path"])
    base, shifted = CodeCorpus.load(codes), CodeCorpus.load(tmp_path / f"codes.shift{hop // 2}.npz")
    faster = CodeCorpus.load(tmp_path / "codes.speed1.25.npz")
    base_train = [tokens for tokens, split in zip(base.tokens, base.splits) if split == "train"]
    assert set(shifted.splits) == {"train"} and len(shifted.tokens) == len(base_train)
    assert len(trainer.train_set.tokens) == 3 * len(base_train)
    assert trainer.heldout.keys() == trained["trainer"].heldout.keys()
    assert sum(len(v.tokens) for v in trainer.heldout.values()) == sum(len(v.tokens) for v in trained["trainer"].heldout.values())
    period = trainer.layout.period
    for a, b in zip(base_train, shifted.tokens):  # the same audio, a hop's fraction shorter: at most a frame less
        assert 0 <= len(a) - len(b) <= period
    differ = [not np.array_equal(a[: len(b)], b) for a, b in zip(base_train, shifted.tokens)]
    assert all(differ)  # framed elsewhere, the codes are not the same stream
    for a, b in zip(base_train, faster.tokens):  # 1.25 times faster: 0.8 as many frames, give or take one
        assert abs(len(b) // period - 0.8 * len(a) // period) <= 1
    t.time_shifts = (hop,)
    with pytest.raises(ValueError, match="between 0 and the hop"):
        PriorTrainer(config, trained["model_path"])
    t.time_shifts, t.speed_factors = (), (1.0,)
    with pytest.raises(ValueError, match="speed_factors: 1.0 is not a speed"):
        PriorTrainer(config, trained["model_path"])


@pytest.fixture(scope="module")
def with_prior(trained):
    """The tiny model loaded from its file, its prior exported beside it (MODEL.prior.pt)."""
    from vqspeech import checkpoint
    from vqspeech.train.prior_loop import export_prior

    ckpt = checkpoint.latest_checkpoint(trained["root"] / "run")
    export_prior(ckpt, checkpoint.prior_path(trained["model_path"]))
    return checkpoint.load(trained["model_path"])


def test_v4_files_decode_to_exactly_the_codes_of_plain_packing(with_prior, trained):
    from vqspeech import audio

    model = with_prior
    wav = audio.load(trained["root"] / "corpus" / "alice" / "alice_0.wav")
    coded, plain = api.encode_audio(model, wav), api.encode_audio(model, wav, prior=False)
    p4, p3 = bitstream.read(coded), bitstream.read(plain)
    assert (p4.header.version, p3.header.version) == (4, 3) and p4.header.prior == entropy.prior_for(model).id
    codes, pitch = api.symbols(model, p4)
    np.testing.assert_array_equal(codes, p3.codes)
    np.testing.assert_array_equal(pitch, p3.pitch)
    assert len(coded) < len(plain)  # a trained prior spends fewer bits than 9 a code
    np.testing.assert_array_equal(api.decode_bytes(model, coded)[0], api.decode_bytes(model, plain)[0])
    broken = bytearray(coded)
    broken[len(broken) // 2] ^= 0x10
    with pytest.raises(bitstream.BitstreamError, match="checksum"):
        api.decode_bytes(model, bytes(broken))
    with pytest.raises(bitstream.BitstreamError, match="range-coded under prior"):
        bitstream.unpack(coded)


def test_a_prior_of_another_model_or_a_broken_one_is_refused_by_name(with_prior, trained, tmp_path):
    from tests.conftest import tiny_codec_model
    from vqspeech import checkpoint

    prior_file = checkpoint.prior_path(trained["model_path"])
    other, _ = tiny_codec_model(1)
    with pytest.raises(entropy.PriorError, match=f"{prior_file}: a prior of another model"):
        entropy.load_prior(prior_file, other)
    (tmp_path / "bad.prior.pt").write_bytes(b"not a prior")
    with pytest.raises(entropy.PriorError, match="bad.prior.pt: not a readable prior file"):
        entropy.load_prior(tmp_path / "bad.prior.pt")
    with pytest.raises(entropy.PriorError, match="missing.pt: no such prior file"):
        entropy.prior_for(with_prior, tmp_path / "missing.pt")


def test_commands_encode_with_the_prior_and_sample_and_continue(with_prior, trained, tmp_path, capsys):
    from vqspeech import cli

    model_path = str(trained["model_path"])
    src = trained["root"] / "corpus" / "bob" / "bob_1.wav"
    assert cli.main(["encode", str(src), "-o", str(tmp_path / "a.vqs"), "--model", model_path, "-q"]) == 0
    assert cli.main(["encode", str(src), "-o", str(tmp_path / "b.vqs"), "--model", model_path, "--no-prior", "-q"]) == 0
    a, b = (bitstream.read((tmp_path / name).read_bytes()).header for name in ("a.vqs", "b.vqs"))
    assert a.version == 4 and b.version == 3
    # The line each encode prints gives the file's real rate, and the packed payload's only where it is packed
    # (a range-coded file is smaller than the nominal packed rate: printing that one as its rate misled).
    printed = capsys.readouterr().out.splitlines()
    for line, name, header in zip(printed, ("a.vqs", "b.vqs"), (a, b)):
        whole = (tmp_path / name).stat().st_size * 8 / header.duration / 1000
        assert f"{whole:.2f} kbit/s (" in line
    assert "range-coded under the prior" in printed[0] and f"packed payload {b.bitrate / 1000:.2f} kbit/s" in printed[1]
    assert cli.main(["decode", str(tmp_path / "a.vqs"), "-o", str(tmp_path / "a.wav"), "--model", model_path, "-q"]) == 0
    assert cli.main(["info", str(tmp_path / "a.vqs")]) == 0
    # v4 without its prior: a one-line error naming the file; the v3 file needs none.
    assert cli.main(["decode", str(tmp_path / "a.vqs"), "-o", str(tmp_path / "c.wav"), "--model", model_path,
                     "--prior", str(tmp_path / "none.pt"), "-q"]) == 1
    assert cli.main(["decode", str(tmp_path / "b.vqs"), "-o", str(tmp_path / "d.wav"), "--model", model_path,
                     "--prior", str(tmp_path / "none.pt"), "-q"]) == 0
    out = tmp_path / "s.wav"
    assert cli.main(["sample", "--speaker", "bob", "--seconds", "0.5", "--seed", "3", "-o", str(out), "--model", model_path]) == 0
    import soundfile as sf

    wav, rate = sf.read(out)
    assert rate == 16000 and abs(len(wav) - 8000) <= 256 and np.abs(wav).max() > 0
    again = tmp_path / "s2.wav"
    cli.main(["sample", "--speaker", "bob", "--seconds", "0.5", "--seed", "3", "-o", str(again), "--model", model_path])
    assert again.read_bytes() == out.read_bytes()  # the seed decides the draw
    assert cli.main(["sample", "--speaker", "bob", "-o", str(out), "--model", model_path]) == 2  # exists: refused
    cont = tmp_path / "c.wav"
    assert cli.main(["continue", str(src), "--seconds", "0.5", "-o", str(cont), "--model", model_path]) == 0
    assert sf.info(cont).duration > sf.info(src).duration + 0.4
