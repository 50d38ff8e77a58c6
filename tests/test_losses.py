import numpy as np
import pytest
import torch

from emosphere.config import ObjectiveConfig
from emosphere.losses import aux_weight, ccc, ccc_loss, region_loss


def numpy_ccc(p, y):
    p, y = np.asarray(p, float), np.asarray(y, float)
    cov = np.mean((p - p.mean()) * (y - y.mean()))
    return 2 * cov / (p.var() + y.var() + (p.mean() - y.mean()) ** 2)


def test_ccc_matches_numpy_formula():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(64, 3))
    p = 0.6 * y + rng.normal(scale=0.5, size=(64, 3)) + 0.2
    got = ccc(torch.tensor(p), torch.tensor(y)).numpy()
    np.testing.assert_allclose(got, [numpy_ccc(p[:, i], y[:, i]) for i in range(3)], rtol=1e-5)


def test_ccc_perfect_and_constant_predictors():
    y = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.9, 0.4], [0.7, 0.3, 0.8], [0.2, 0.6, 0.1]])
    np.testing.assert_allclose(ccc(y, y).numpy(), 1.0, atol=1e-6)
    assert ccc_loss(y, y).item() == pytest.approx(0.0, abs=1e-5)
    constant = torch.full_like(y, 0.5)
    np.testing.assert_allclose(ccc(constant, y).numpy(), 0.0, atol=1e-6)
    assert ccc_loss(constant, y).item() == pytest.approx(3.0, abs=1e-5)


def test_ccc_penalises_bias_that_pearson_ignores():
    y = torch.linspace(0, 1, 20)[:, None]
    assert ccc(y + 0.5, y).item() < 0.5


def test_paper_schedule():
    config = ObjectiveConfig()
    weights = [aux_weight(epoch, config) for epoch in range(8)]
    np.testing.assert_allclose(weights, [1.0, 0.802, 0.604, 0.406, 0.208, 0.0, 0.0, 0.0], atol=1e-12)


def test_configurable_schedules():
    assert aux_weight(3, ObjectiveConfig(aux_decay_epochs=10, aux_end=0.0)) == pytest.approx(0.7)
    assert aux_weight(12, ObjectiveConfig(aux_decay_epochs=10)) == 0.0
    assert aux_weight(15, ObjectiveConfig(aux_schedule="constant", aux_start=0.3)) == 0.3
    assert aux_weight(0, ObjectiveConfig(aux_schedule="none")) == 0.0
    with pytest.raises(ValueError, match="aux_schedule"):
        aux_weight(0, ObjectiveConfig(aux_schedule="cosine"))


def test_region_loss_is_class_weighted():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    plain = region_loss(logits, labels, None)
    favour_1 = region_loss(logits, labels, torch.tensor([0.0, 1.0]))
    assert favour_1.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[2:], labels[2:]).item())
    assert favour_1.item() != pytest.approx(plain.item())
