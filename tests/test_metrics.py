import numpy as np
import pytest

from emosphere.metrics import ccc, region_metrics, regression_metrics


def test_regression_metrics_names_and_mean():
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 7, size=(50, 3))
    p = y.copy()
    p[:, 2] = 4.0
    m = regression_metrics(p, y)
    assert list(m) == ["arousal", "valence", "dominance", "mean"]
    assert m["arousal"] == pytest.approx(1.0) and m["valence"] == pytest.approx(1.0)
    assert m["dominance"] == pytest.approx(0.0)
    assert m["mean"] == pytest.approx(2 / 3)


def test_ccc_constant_target_and_prediction_is_zero_not_nan():
    assert ccc(np.ones(5), np.ones(5)) == 0.0


def test_region_metrics_by_hand():
    target = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    m = region_metrics(pred, target, num_classes=8)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls 2/3, 1/2, 1; precisions 1, 1/2, 1/2; classes 3-7 unseen are left out
    assert m["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
