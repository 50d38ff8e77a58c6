import typing
from pathlib import Path

import pytest

from emosphere.config import ConfigError, RunConfig, load_config

RECIPES = sorted(Path(__file__).parents[1].joinpath("recipes").rglob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_load(recipe):
    config = load_config(recipe)
    assert isinstance(config, RunConfig)


def test_paper_recipe_settings():
    config = load_config(Path(__file__).parents[1] / "recipes/msp_podcast/emosphere_ser.yaml")
    assert config.model.encoder.name == "microsoft/wavlm-large"
    assert (config.model.pooling, config.model.regions) == ("style", "octant")
    assert config.optim.lr == 1e-5 and config.data.batch_size * config.optim.accumulate_grad_batches == 64
    assert (config.trainer.max_epochs, config.trainer.seed, config.data.max_seconds) == (20, 7, 12.0)
    assert not config.data.keep_other


def test_overrides_and_round_trip(tmp_path):
    config = load_config(None, ["trainer.max_epochs=3", "optim.lr=1e-4", "model.encoder.config={layerdrop: 0.0}",
                                "data.corpus=/data/msp"])
    assert config.trainer.max_epochs == 3 and config.optim.lr == 1e-4
    assert config.model.encoder.config == {"layerdrop": 0.0}
    config.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epoch=3", "trainer.max_epoch"),
    ("trainer.max_epochs=three", "trainer.max_epochs"),
    ("data.keep_other=maybe", "data.keep_other"),
    ("nonsense", "key.sub=value"),
])
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
