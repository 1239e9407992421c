"""Configs: YAML overlays and --set overrides become typed dataclasses, and bad values are refused by name."""

from pathlib import Path

import pytest

from vqspeech.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_overrides_take_yaml_numbers_of_any_spelling():
    config = load_config(overrides={"train": {"lr": "5e-4", "lr_min": 1, "steps": 10}})
    assert config.train.lr == 5e-4 and isinstance(config.train.lr, float)
    assert config.train.lr_min == 1.0 and isinstance(config.train.lr_min, float)


@pytest.mark.parametrize("overrides, message", [
    ({"train": {"lr": "fast"}}, "TrainConfig.lr: 'fast' is not a number"),
    ({"train": {"steps": "many"}}, "TrainConfig.steps: 'many' is not of type int"),
    ({"model": {"parallel": {"phase": 3}}}, "ParallelDecoderConfig.phase: 3 is not of type str"),
    ({"train": {"stpes": 10}}, "unknown TrainConfig keys"),
    ({"model": {"quantizer": {"codebook_size": -4}}}, r"model.quantizer.codebook_size=-4: must be at least 2"),
    ({"model": {"quantizer": {"method": "kmeans"}}}, r"model.quantizer.method='kmeans': must be nearest, soft_em or gumbel"),
    ({"data": {"batch_size": 0}}, r"data.batch_size=0: must be at least 1"),
    ({"train": {"lr": -1}}, r"train.lr=-1.0: must be positive"),
])
def test_bad_values_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides=overrides)


@pytest.mark.parametrize("path", sorted(str(p) for p in (REPO / "recipes").glob("*/conf/**/*.yaml")), ids=lambda p: Path(p).name)
def test_every_recipe_config_loads(path):
    """A misspelt key or a value of the wrong type in a recipe's config fails here, not hours into a run."""
    from vqspeech.config import load_prior_config

    (load_prior_config if Path(path).parent.parent.name == "prior" else load_config)(path)


def test_a_malformed_yaml_file_is_named_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1, 2\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML at line \d+"):
        load_config(bad)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml: a config must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_training_without_a_manifest_leaves_no_run_folder(tmp_path):
    from vqspeech.train.loop import Trainer

    for manifest, message in (("", "data.manifest: not set"), (str(tmp_path / "nope.csv"), "nope.csv: no such manifest")):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            Trainer(load_config(REPO / "recipes" / "conf" / "debug.yaml", overrides={
                "data": {"manifest": manifest}, "train": {"run_dir": str(tmp_path / "run")}}))
        assert not (tmp_path / "run").exists()
