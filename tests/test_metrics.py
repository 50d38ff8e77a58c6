import numpy as np
import pytest

from emosphere.metrics import ccc, confusion_matrix, confusion_scores, region_metrics, regression_metrics


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


def test_confusion_scores_of_a_stack_are_the_metrics_of_each_matrix():
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 5, 30), rng.integers(0, 3, 30)) for _ in range(4)]  # classes 3, 4 never true
    stack = np.stack([confusion_matrix(p, t, 5) for p, t in pairs])
    scores = confusion_scores(stack)
    for k, (p, t) in enumerate(pairs):
        expected = region_metrics(p, t, 5)
        assert {name: scores[name][k] for name in expected} == pytest.approx(expected, abs=1e-15)
