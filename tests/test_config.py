import typing
from pathlib import Path

import pytest

from emosphere.config import ConfigError, load_config
from emosphere.preflight import check_strategy, encoder_min_samples

RECIPES = sorted(
    p for p in Path(__file__).parents[1].joinpath("recipes").rglob("*.yaml") if p.parent.name != "ablations"
)  # ablation sets, not run configs: tests/test_ablate.py


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_pass_the_checks_a_run_makes_before_any_work(recipe, tmp_path):
    """Every value of every recipe: types, choices, ranges, rules between keys, the Lightning
    strategy and (for encoders built from a config; pretrained ones need the hub) the encoder."""
    config = load_config(recipe)
    config.save(tmp_path / "config.yaml")  # as a run records it: read back, the same run
    assert load_config(tmp_path / "config.yaml").to_dict() == config.to_dict()
    check_strategy(config.trainer.strategy)
    if not config.model.encoder.pretrained:
        assert encoder_min_samples(config.model.encoder) > 0


def test_a_recipe_with_a_typo_fails(tmp_path):
    recipe = RECIPES[0].read_text().replace("regions: octant", "regions: octnat")
    assert "octnat" in recipe
    (tmp_path / "typo.yaml").write_text(recipe)
    with pytest.raises(ConfigError, match="model.regions: 'octnat'"):
        load_config(tmp_path / "typo.yaml")


def test_paper_recipe_settings():
    config = load_config(Path(__file__).parents[1] / "recipes/msp_podcast/emosphere_ser.yaml")
    assert config.model.encoder.name == "microsoft/wavlm-large"
    assert (config.model.pooling, config.model.regions) == ("style", "octant")
    assert config.optim.lr == 1e-5 and config.data.batch_size * config.optim.accumulate_grad_batches == 64
    assert (config.trainer.max_epochs, config.trainer.seed, config.data.max_seconds) == (20, 7, 12.0)
    assert not config.data.keep_other
    assert config.model.encoder.attention == "fused" and not config.data.bucket_by_length


def test_overrides_and_round_trip(tmp_path):
    config = load_config(
        None,
        ["trainer.max_epochs=3", "optim.lr=1e-4", "model.encoder.config={layerdrop: 0.0}", "data.corpus=/data/msp"],
    )
    assert config.trainer.max_epochs == 3 and config.optim.lr == 1e-4
    assert config.model.encoder.config == {"layerdrop": 0.0}
    config.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epoch=3", "trainer.max_epoch"),
        ("trainer.max_epochs=three", "trainer.max_epochs"),
        ("data.keep_other=maybe", "data.keep_other"),
        ("nonsense", "key.sub=value"),
        (
            "trainer.micro_batches_per_step=3",
            r"micro_batches_per_step: 3 .* divide optim.accumulate_grad_batches \(4\)",
        ),
        ("model.encoder.sub_batches=0", "model.encoder.sub_batches"),
        ("model.encoder.attention=flash", "model.encoder.attention: 'flash' is not one of fused, eager"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_choices_name_the_allowed_values():
    with pytest.raises(ConfigError, match=r"model.regions: 'octnat' is not one of octant, sphere30"):
        load_config(None, ["model.regions=octnat"])
    with pytest.raises(ConfigError, match="objective.aux_schedule: 'cosine'"):
        load_config(None, ["objective.aux_schedule=cosine"])


def test_choices_match_what_the_package_implements():
    from emosphere.config import Pooling, RegionSetName
    from emosphere.pooling import POOLINGS
    from emosphere.sphere import RegionSet

    assert typing.get_args(Pooling) == POOLINGS
    for name in typing.get_args(RegionSetName):
        RegionSet(name)  # each declared region set exists
    with pytest.raises(ValueError):
        RegionSet("sphere20")


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_size=-4", "data.batch_size: must be >= 1, got -4"),
        ("data.num_workers=-1", "data.num_workers: must be >= 0"),
        ("data.max_seconds=0", "data.max_seconds: must be > 0"),
        ("trainer.max_epochs=0", "trainer.max_epochs: must be >= 1"),
        ("optim.lr=-1e-5", "optim.lr: must be > 0"),
        ("optim.lr=.nan", "optim.lr: must be > 0, got nan"),
        ("model.head_dropout=1.0", r"model.head_dropout: must be in \[0, 1\)"),
        ("model.origin_radius=-0.1", "model.origin_radius: must be >= 0"),
        ("objective.aux_decay_epochs=0", "objective.aux_decay_epochs: must be >= 1"),
        ("trainer.seed=-1", r"trainer.seed: must be in \[0, 4294967295\]"),
        ("trainer.precision=32", "trainer.precision: '32' is not one of auto, 32-true"),
        ("trainer.accelerator=gpus", "trainer.accelerator: 'gpus' is not one of auto, cpu, gpu"),
        ("trainer.devices=two", "trainer.devices: 'two' is not auto"),
        ("data.dev_split=Train", "data.dev_split: 'Train' is also data.train_split"),
        ("model.encoder.pretrained=false", "model.encoder.config: with model.encoder.pretrained false"),
        ("data.corpus=[", "not valid YAML"),
        ("data.scale=[5,1]", r"data.scale: must be two numbers \[low, high\] with low < high, got \[5, 1\]"),
        ("data.scale=[1,2,3]", "data.scale: must be two numbers"),
        ("data.scale=1-5", "data.scale: expected list"),
    ],
)
def test_bad_values_name_the_key_and_what_it_allows(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_good_edge_values_pass():
    config = load_config(
        None,
        [
            "data.num_workers=0",
            "model.head_dropout=0",
            "trainer.devices=0,1",
            "trainer.devices=-1",
            "trainer.precision=bf16-mixed",
            "optim.gradient_clip_val=0",
            "data.scale=[-1, 1]",
        ],
    )
    assert config.trainer.devices == "-1" and config.trainer.precision == "bf16-mixed"
    assert config.data.scale == [-1.0, 1.0]


def test_precision_choices_are_lightning_precisions():
    from lightning.fabric.connector import _PRECISION_INPUT_STR

    from emosphere.config import Precision

    assert set(typing.get_args(Precision)) - {"auto"} <= set(typing.get_args(_PRECISION_INPUT_STR))


def test_a_broken_recipe_file_names_the_file(tmp_path):
    (tmp_path / "r.yaml").write_text("data:\n  corpus: [unclosed\n")
    with pytest.raises(ConfigError, match=r"r.yaml: not valid YAML .* line 3"):
        load_config(tmp_path / "r.yaml")
