import numpy as np
import pytest

from emosphere.sphere import (
    MODEL_SCALE,
    OCTANT_NAMES,
    RegionSet,
    Scale,
    centre,
    from_spherical,
    from_unit,
    to_spherical,
    to_unit,
)


def test_scales_round_trip_and_clip():
    x = np.array([1.0, 4.0, 7.0])
    assert to_unit(x).tolist() == [0.0, 0.5, 1.0]
    assert centre(x).tolist() == [-1.0, 0.0, 1.0]
    assert from_unit(np.array([-0.2, 0.5, 1.3])).tolist() == [1.0, 4.0, 7.0]


def test_a_corpus_scale_maps_ends_and_midpoint_onto_the_model_scale():
    five = Scale(1, 5)
    assert five.to_model(np.array([1.0, 3.0, 5.0])).tolist() == [1.0, 4.0, 7.0]
    assert Scale(-1, 1).to_model(np.array([-1.0, 0.0, 1.0])).tolist() == [1.0, 4.0, 7.0]
    x = np.random.default_rng(0).uniform(1, 5, 100)
    np.testing.assert_allclose(five.from_model(five.to_model(x)), x, rtol=0, atol=1e-14)
    # predictions come back on the corpus's scale, clipped to it
    assert five.from_unit(np.array([-0.1, 0.5, 1.2])).tolist() == [1.0, 3.0, 5.0]
    assert (five.label, Scale(-1, 1).label, MODEL_SCALE.label) == ("1-5", "[-1, 1]", "1-7")


def test_the_model_scale_leaves_labels_and_predictions_exactly_as_they_were():
    x = np.round(np.random.default_rng(1).uniform(1, 7, 1000), 4)
    assert np.array_equal(MODEL_SCALE.to_model(x), x)
    u = np.random.default_rng(2).uniform(-0.1, 1.1, 1000)
    assert np.array_equal(MODEL_SCALE.from_unit(u), np.clip(u * 6 + 1, 1, 7))


@pytest.mark.parametrize("low, high", [(5, 1), (1, 1), (1, float("inf")), (float("nan"), 5)])
def test_a_scale_that_is_not_one_is_refused(low, high):
    with pytest.raises(ValueError, match="rating scale"):
        Scale(low, high)


@pytest.mark.parametrize(
    "avd, octant",
    [
        ((5, 5, 5), "I"),
        ((3, 5, 5), "II"),
        ((3, 3, 5), "III"),
        ((5, 3, 5), "IV"),
        ((5, 5, 3), "V"),
        ((3, 5, 3), "VI"),
        ((3, 3, 3), "VII"),
        ((5, 3, 3), "VIII"),
        ((4, 4, 4), "I"),  # the midpoint counts as '+' on every axis
        ((4.0, 3.9, 4.0), "IV"),  # 4.0 is '+', just below is '-'
        ((7, 7, 7), "I"),
        ((1, 1, 1), "VII"),
        ((1, 7, 1), "VI"),
        ((7, 1, 7), "IV"),
        ((1, 4, 7), "II"),
    ],
)
def test_octant_sign_rule(avd, octant):
    regions = RegionSet("octant")
    assert OCTANT_NAMES[int(regions.assign(np.array([avd], dtype=float))[0])] == octant


def test_spherical_ranges_and_round_trip():
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, size=(2000, 3))
    s = to_spherical(c)
    r, theta, phi = s.T
    assert (r >= 0).all() and (theta >= 0).all() and (theta <= np.pi).all()
    assert (phi > -np.pi).all() and (phi <= np.pi).all()
    np.testing.assert_allclose(from_spherical(s), c, atol=1e-12)


def test_spherical_conventions():
    # azimuth atan2(d, a), polar arccos(v / r), angles 0 at the origin
    np.testing.assert_allclose(to_spherical(np.array([0.0, 0.0, 1.0])), [1, np.pi / 2, np.pi / 2])
    np.testing.assert_allclose(to_spherical(np.array([0.0, -1.0, 0.0])), [1, np.pi, 0])
    np.testing.assert_allclose(to_spherical(np.array([-1.0, 0.0, 0.0])), [1, np.pi / 2, np.pi])
    np.testing.assert_allclose(to_spherical(np.array([-1.0, 0.0, -0.0])), [1, np.pi / 2, np.pi])
    np.testing.assert_array_equal(to_spherical(np.zeros(3)), [0, 0, 0])


@pytest.mark.parametrize(
    "name, classes", [("octant", 8), ("sphere90", 9), ("sphere60", 19), ("sphere45", 33), ("sphere30", 73)]
)
def test_region_set_sizes(name, classes):
    regions = RegionSet(name)
    assert regions.num_classes == classes == len(set(regions.class_names))
    rng = np.random.default_rng(1)
    labels = regions.assign(rng.uniform(1, 7, size=(5000, 3)))
    assert labels.min() >= 0 and labels.max() < classes


def test_grid_boundaries_and_origin():
    grid = RegionSet("sphere90")
    names = np.asarray(grid.class_names)
    # origin class for the exact midpoint; angles of other points pick half-open bins
    assert names[grid.assign(np.array([4.0, 4.0, 4.0]))] == "origin"
    assert names[grid.assign(np.array([5.0, 5.0, 4.0]))] == "theta000-090_phi000-090"  # phi = 0
    assert names[grid.assign(np.array([4.0, 5.0, 5.0]))] == "theta000-090_phi090-180"  # phi = 90
    assert names[grid.assign(np.array([4.0, 1.0, 4.0]))] == "theta090-180_phi000-090"  # theta = 180 -> last bin
    assert names[grid.assign(np.array([3.0, 4.0, 3.0]))] == "theta090-180_phi180-270"  # theta = 90 -> second bin
    near = RegionSet("sphere60", origin_radius=0.1)
    assert near.assign(np.array([4.2, 4.0, 4.0])) == 0
    assert near.assign(np.array([4.4, 4.0, 4.0])) != 0


def test_grid90_agrees_with_octants_off_the_axes():
    rng = np.random.default_rng(2)
    avd = rng.uniform(1, 7, size=(3000, 3))
    avd = avd[(np.abs(avd - 4) > 1e-3).all(1)]
    octant, grid = RegionSet("octant").assign(avd), RegionSet("sphere90").assign(avd)
    pairs = set(zip(octant.tolist(), grid.tolist()))
    assert len(pairs) == 8  # a one-to-one map between the two partitions


def test_class_weights():
    regions = RegionSet("octant")
    labels = np.array([0, 0, 0, 1, 2, 2])
    weights = regions.class_weights(labels)
    assert weights[0] == pytest.approx(6 / (8 * 3))
    assert weights[1] == pytest.approx(6 / 8)
    assert weights[3] == 0.0  # empty class


def test_unknown_region_set():
    with pytest.raises(ValueError, match="sphere30"):
        RegionSet("sphere20")


# --- properties (hypothesis) ----------------------------------------------------------------------

import re  # noqa: E402

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from emosphere.sphere import GRID_DELTAS  # noqa: E402

PROPERTIES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ON_SCALE = st.floats(1.0, 7.0, allow_nan=False)
CENTRED = st.floats(-1.0, 1.0, allow_nan=False)
REGION_SETS = [RegionSet("octant")] + [RegionSet(f"sphere{d}", r) for d in GRID_DELTAS for r in (0.0, 0.3)]
# The octants in class order, as the module docstring gives them: signs of (A, V, D), '+' for >= 0.
OCTANT_SIGNS = {
    "I": "+++",
    "II": "-++",
    "III": "--+",
    "IV": "+-+",
    "V": "++-",
    "VI": "-+-",
    "VII": "---",
    "VIII": "+--",
}


@PROPERTIES
@given(arrays(np.float64, st.integers(1, 20), elements=ON_SCALE))
def test_scales_round_trip_on_the_1_to_7_scale(x):
    unit = to_unit(x)
    assert ((unit >= 0) & (unit <= 1)).all()
    np.testing.assert_allclose(from_unit(unit), x, atol=1e-12)
    c = centre(x)
    assert ((c >= -1) & (c <= 1)).all()
    np.testing.assert_allclose(c, 2 * unit - 1, atol=1e-15)


@PROPERTIES
@given(arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e6, 1e6)))
def test_predictions_off_the_scale_are_clipped(u):
    x = from_unit(u)
    assert ((x >= 1) & (x <= 7)).all()
    inside = (u >= 0) & (u <= 1)
    np.testing.assert_allclose(x[inside], u[inside] * 6 + 1)


@PROPERTIES
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=CENTRED))
def test_spherical_round_trip_and_ranges(c):
    s = to_spherical(c)
    r, theta, phi = s.T
    assert (r >= 0).all() and ((theta >= 0) & (theta <= np.pi)).all() and ((phi > -np.pi) & (phi <= np.pi)).all()
    np.testing.assert_allclose(r, np.linalg.norm(c, axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(from_spherical(s), c, atol=1e-12)


@PROPERTIES
@given(st.sampled_from(REGION_SETS), arrays(np.float64, st.tuples(st.integers(1, 30), st.just(3)), elements=ON_SCALE))
def test_region_assignment_invariants(regions, avd):
    labels = regions.assign(avd)
    assert labels.shape == (len(avd),) and labels.dtype.kind == "i"
    assert ((labels >= 0) & (labels < regions.num_classes)).all()
    assert [int(regions.assign(point)) for point in avd] == labels.tolist()  # one at a time = batched
    names = np.asarray(regions.class_names)[labels]
    c = centre(avd)
    if regions.delta is None:
        signs = ["".join("+" if v >= 0 else "-" for v in point) for point in c]
        assert [OCTANT_SIGNS[name] for name in names] == signs
        return
    r, theta, phi = np.moveaxis(to_spherical(c), -1, 0)
    np.testing.assert_array_equal(names == "origin", r <= regions.origin_radius + 1e-12)
    slack = 1e-6  # degrees: points on a boundary may go either way within rounding
    for name, t, p in zip(names, np.degrees(theta), np.degrees(np.mod(phi, 2 * np.pi))):
        if name == "origin":
            continue
        t0, t1, p0, p1 = map(int, re.fullmatch(r"theta(\d+)-(\d+)_phi(\d+)-(\d+)", name).groups())
        assert t0 - slack <= t <= t1 + slack and p0 - slack <= p <= p1 + slack, (name, t, p)


@PROPERTIES
@given(st.sampled_from(REGION_SETS), st.tuples(CENTRED, CENTRED, CENTRED), st.floats(0.05, 1.0))
def test_a_region_depends_only_on_the_direction(regions, point, k):
    c = np.array(point)
    assume(np.abs(c).min() > 1e-3 and np.linalg.norm(k * c) > regions.origin_radius + 1e-3)
    bins = to_spherical(c)[1:] / np.deg2rad(regions.delta or 90)
    assume(np.all(np.abs(bins - np.round(bins)) > 1e-6))  # off the grid's boundaries, where rounding decides
    to_scale = lambda centred: (centred + 1) / 2 * 6 + 1  # noqa: E731
    assert regions.assign(to_scale(c)) == regions.assign(to_scale(k * c))
