import numpy as np
import pytest

from emosphere.sphere import (OCTANT_NAMES, RegionSet, centre, from_spherical, from_unit, to_spherical, to_unit)


def test_scales_round_trip_and_clip():
    x = np.array([1.0, 4.0, 7.0])
    assert to_unit(x).tolist() == [0.0, 0.5, 1.0]
    assert centre(x).tolist() == [-1.0, 0.0, 1.0]
    assert from_unit(np.array([-0.2, 0.5, 1.3])).tolist() == [1.0, 4.0, 7.0]


@pytest.mark.parametrize("avd, octant", [
    ((5, 5, 5), "I"), ((3, 5, 5), "II"), ((3, 3, 5), "III"), ((5, 3, 5), "IV"),
    ((5, 5, 3), "V"), ((3, 5, 3), "VI"), ((3, 3, 3), "VII"), ((5, 3, 3), "VIII"),
    ((4, 4, 4), "I"),            # the midpoint counts as '+' on every axis
    ((4.0, 3.9, 4.0), "IV"),     # 4.0 is '+', just below is '-'
    ((7, 7, 7), "I"), ((1, 1, 1), "VII"), ((1, 7, 1), "VI"), ((7, 1, 7), "IV"), ((1, 4, 7), "II"),
])
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


@pytest.mark.parametrize("name, classes", [("octant", 8), ("sphere90", 9), ("sphere60", 19),
                                           ("sphere45", 33), ("sphere30", 73)])
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
    assert names[grid.assign(np.array([5.0, 5.0, 4.0]))] == "theta000-090_phi000-090"   # phi = 0
    assert names[grid.assign(np.array([4.0, 5.0, 5.0]))] == "theta000-090_phi090-180"   # phi = 90
    assert names[grid.assign(np.array([4.0, 1.0, 4.0]))] == "theta090-180_phi000-090"   # theta = 180 -> last bin
    assert names[grid.assign(np.array([3.0, 4.0, 3.0]))] == "theta090-180_phi180-270"   # theta = 90 -> second bin
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
