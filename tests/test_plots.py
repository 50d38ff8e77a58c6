"""The numbers behind the report's plots."""

import numpy as np
import pandas as pd
import pytest

from emosphere.config import ObjectiveConfig
from emosphere.plots import aux_weights, error_by_bin, group_ccc, region_predictions
from emosphere.sphere import RegionSet


def test_error_by_bin_shows_the_pull_to_the_middle():
    true = np.tile(np.linspace(1, 7, 61)[:, None], (1, 3))
    predicted = 4 + 0.5 * (true - 4)  # a model that shrinks towards the midpoint
    table = error_by_bin(predicted, true)
    arousal = table[table["dimension"] == "arousal"].set_index("centre")["mean_error"]
    assert arousal.iloc[0] > 1 and arousal.iloc[-1] < -1 and abs(arousal.loc[4.25]) < 0.2
    assert table.groupby("dimension")["n"].sum().tolist() == [61, 61, 61]


def test_groups_get_their_own_ccc():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 7, (40, 3))
    table = pd.DataFrame(
        np.c_[true, true], columns=["arousal", "valence", "dominance", "true_EmoAct", "true_EmoVal", "true_EmoDom"]
    )
    table["Gender"] = ["Female"] * 30 + ["Male"] * 10
    table.loc[table["Gender"] == "Male", "valence"] = 4.0  # a model that fails on one group
    genders = group_ccc(table, "Gender", min_n=11).set_index("Gender")
    assert list(genders.index) == ["Female"]  # 10 male rows are too few
    genders = group_ccc(table, "Gender").set_index("Gender")
    assert genders.loc["Female", "valence"] == pytest.approx(1.0) and genders.loc["Male", "valence"] == 0.0


def test_regions_come_from_the_values_without_a_region_head():
    table = pd.DataFrame(
        {
            "arousal": [6.0, 2.0],
            "valence": [6.0, 6.0],
            "dominance": [6.0, 2.0],
            "true_EmoAct": [6.0, 6.0],
            "true_EmoVal": [6.0, 6.0],
            "true_EmoDom": [6.0, 6.0],
        }
    )
    truth, guess, names = region_predictions(table, RegionSet("octant"))
    assert [names[i] for i in truth] == ["I", "I"] and [names[i] for i in guess] == ["I", "VI"]
    table["region_classifier"] = ["II", "I"]  # the region head's answer wins when there is one
    assert [names[i] for i in region_predictions(table, RegionSet("octant"))[1]] == ["II", "I"]


def test_regions_keep_the_runs_origin_radius():
    near_centre = {"arousal": [4.1], "valence": [4.0], "dominance": [4.05]}
    table = pd.DataFrame(
        {**near_centre, **{f"true_{c}": v for c, v in zip(("EmoAct", "EmoVal", "EmoDom"), near_centre.values())}}
    )
    truth, guess, names = region_predictions(table, RegionSet("sphere45", origin_radius=0.1))
    assert [names[truth[0]], names[guess[0]]] == ["origin", "origin"]
    truth, guess, names = region_predictions(table, RegionSet("sphere45"))
    assert names[truth[0]] != "origin"


def test_aux_weight_per_epoch_is_logged_or_from_the_schedule():
    epochs = pd.DataFrame({"train/aux_weight": [1.0, np.nan, np.nan]}, index=[0, 1, 2])
    weights = aux_weights(epochs, ObjectiveConfig(aux_decay_epochs=2))
    assert weights.tolist() == pytest.approx([1.0, 0.505, 0.0])
