"""train-wavenet: the WaveNet trained alone on a finished model's frozen codes, reading its parallel decoder's rendering."""

import pytest
import torch

from vqspeech import checkpoint
from vqspeech.config import load_config
from vqspeech.models import fast_sampler
from vqspeech.train.loop import Trainer
from vqspeech.train.parallel_loop import ParallelObjective
from vqspeech.train.wavenet_loop import WaveNetObjective
from tests.conftest import DEBUG_OVERLAY, synthetic_voice, wavenet_setup


def _config(manifest, run, steps, base="", **decoder):
    return load_config(DEBUG_OVERLAY, overrides={
        "data": {"manifest": str(manifest)},
        "model": {"decoder": decoder},
        "train": {"run_dir": str(run), "steps": steps, "checkpoint_every": steps, "val_every": steps,
                  "eval_every": steps, "base_model": str(base), "lr": 3e-3, "warmup_steps": 1}})


def _base(manifest, tmp_path):
    Trainer(_config(manifest, tmp_path / "vqvae", 3)).fit()
    Trainer(_config(manifest, tmp_path / "par", 20, checkpoint.latest_checkpoint(tmp_path / "vqvae")), objective=ParallelObjective).fit()
    return checkpoint.latest_checkpoint(tmp_path / "par")


def test_trains_only_the_wavenet_and_starts_from_the_base(manifest, tmp_path):
    base_path = _base(manifest, tmp_path)
    base = checkpoint.load_model(base_path)
    trainer = Trainer(_config(manifest, tmp_path / "wn", 60, base_path, parallel_input=True), objective=WaveNetObjective)
    model = trainer.model
    assert model.decoder.excitation.weight.shape[1] == model.config.pitch_harmonics + 1
    # Step 0 is the base's WaveNet exactly: the new input (the parallel rendering) starts at zero weight.
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    torch.manual_seed(0)
    with torch.no_grad():
        cond = base.condition(base.quantizer(base.encoder(batch["wav"][:, None])).quantized, base.training_voice(batch["speaker"], None), batch["pitch"])
        target, prev = base.teacher_forcing(batch["wav"])
        base_ce = torch.nn.functional.cross_entropy(base.decoder(prev, cond, base.excitation(batch["pitch"], batch["lf0"])), target).item()
    before = trainer.compute(model.decoder, batch)[0]["recon/ce"].item()
    assert before == pytest.approx(base_ce, rel=1e-4)

    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    trainer.fit()
    after = trainer.compute(model.decoder, batch)[0]["recon/ce"].item()
    assert after < before - 0.15, (before, after)
    for k, v in model.state_dict().items():
        if k in frozen:
            torch.testing.assert_close(v, frozen[k], msg=f"{k} moved: only the WaveNet trains")
    assert model.decoder.excitation.weight[:, -1].abs().sum() > 0  # it learnt to read the rendering

    # Its cost is the base's plus its own; the export keeps the parts apart; the exported model decodes with it.
    shipped = tmp_path / "shipped.pt"
    cost = checkpoint.export_model(checkpoint.latest_checkpoint(tmp_path / "wn"), shipped)
    assert cost["vqvae"]["steps"] == 3 and cost["parallel"]["steps"] == 20 and cost["wavenet"]["steps"] == 60
    loaded = checkpoint.load_model(shipped)
    assert checkpoint.load_checkpoint(shipped)["training_cost"] == cost
    wav = synthetic_voice(0.25, 150, 3)
    encoded = loaded.encode(wav)
    out = loaded.decode(encoded, "alice", decoder="autoregressive", generator=torch.Generator().manual_seed(0))
    assert out.shape == wav.shape and 0 < abs(out).max() <= 1.0
    # The same draw again is the same audio (the rendering's noise comes from the generator too).
    again = loaded.decode(encoded, "alice", decoder="autoregressive", generator=torch.Generator().manual_seed(0))
    assert abs(again - out).max() == 0

    # A second run from the first adds to the WaveNet's part, not to the parallel decoder's.
    Trainer(_config(manifest, tmp_path / "wn2", 5, shipped, parallel_input=True), objective=WaveNetObjective).fit()
    cost2 = checkpoint.training_cost(checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "wn2")))
    assert cost2["parallel"]["steps"] == 20 and cost2["wavenet"]["steps"] == 65


@pytest.mark.skipif(not fast_sampler.available(), reason="numba is not installed")
def test_compiled_sampler_reads_the_rendering_input():
    model, encoded, cond, lf0, rendering = wavenet_setup(parallel_input=True)
    inputs = model.wavenet_inputs(encoded.pitch[None], lf0, rendering)
    assert inputs.shape == (1, model.config.pitch_harmonics + 1, cond.shape[-1] * model.config.hop)
    fast = model.generate(cond, inputs, generator=torch.Generator().manual_seed(2), method="fast")
    ref = model.generate(cond, inputs, generator=torch.Generator().manual_seed(2), method="reference")
    assert (fast != ref).float().mean() < 0.01


def test_refuses_a_parallel_input_without_a_parallel_decoder(manifest, tmp_path):
    Trainer(_config(manifest, tmp_path / "vqvae", 2)).fit()
    base = checkpoint.latest_checkpoint(tmp_path / "vqvae")
    with pytest.raises(ValueError, match="no parallel decoder"):
        Trainer(_config(manifest, tmp_path / "wn", 2, base, parallel_input=True), objective=WaveNetObjective)
    assert not (tmp_path / "wn" / "checkpoint-2.pt").exists()


def test_input_noise_moves_the_fed_past_but_not_the_target(manifest, tmp_path):
    base_path = _base(manifest, tmp_path)
    config = _config(manifest, tmp_path / "wn", 1, base_path, parallel_input=True)
    config.train.input_noise = 3.0
    trainer = Trainer(config, objective=WaveNetObjective)
    seen = []
    trainer.model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    batch = trainer.valid_set.fixed_batches(2, 1)[0]
    trainer.model.decoder.train()
    noisy = trainer.compute(trainer.model.decoder, batch)[0]["recon/ce"]
    trainer.model.decoder.eval()
    clean = trainer.compute(trainer.model.decoder, batch)[0]["recon/ce"]  # validation sees the true past
    moved = (seen[0] != seen[1]).float().mean()
    assert 0.3 < moved < 1.0 and seen[0].min() >= 0 and seen[0].max() < 256
    assert noisy != clean
