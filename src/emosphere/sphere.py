"""Label geometry: the A/V/D scales, spherical coordinates and region sets.

Everything the paper says about the emotion sphere lives here.

Scales
    Labels are rater means on the 1-7 scale. The regression targets are
    ``(x - 1) / 6`` in [0, 1]; predictions map back by ``x * 6 + 1``, clipped
    to [1, 7]. Centred coordinates ``c = 2 (x - 1) / 6 - 1`` lie in [-1, 1]
    with the scale midpoint 4 at the origin.

    A corpus rated on another scale (IEMOCAP and MSP-IMPROV: 1-5) declares it as
    a :class:`Scale`; its labels are mapped linearly onto 1-7 when they are read
    (low end to 1, high end to 7, midpoint to 4, the sphere's origin) and
    predictions are mapped back to it for reporting. CCC, the regions and the
    spherical coordinates are unchanged by the map, so a model scores the same
    on a corpus whatever scale its labels are written on.

Spherical coordinates of a centred point (a, v, d)
    ``r = |(a, v, d)|`` (intensity), azimuth ``phi = atan2(d, a)`` in
    (-pi, pi], polar ``theta = arccos(v / r)`` in [0, pi]; both angles are 0
    at r = 0.

Region sets (the auxiliary classifier's classes)
    ``octant``: 8 classes by the signs of the centred values, a value >= 0
    counting as '+' (a raw 4.0 is '+'): I A+V+D+, II A-V+D+, III A-V-D+,
    IV A+V-D+, V A+V+D-, VI A-V+D-, VII A-V-D-, VIII A+V-D-.

    ``sphereN`` (N in 30, 45, 60, 90 degrees): a grid of ``360/N`` azimuth bins
    times ``180/N`` polar bins plus one origin class (19, 33, 73 classes for
    60, 45, 30 degrees; 9 for 90). Boundaries:

    * azimuth is wrapped to [0, 360) and bins are half-open ``[k N, (k+1) N)``,
      so a point on a boundary goes to the bin that starts there (phi = 0 is in
      the first bin, phi = 180 in the bin that starts at 180);
    * polar bins are half-open ``[k N, (k+1) N)`` except the last, which is
      closed, so theta = 180 (pure negative valence) is in the last bin;
    * the origin class (index 0) takes every point with ``r <= origin_radius``
      (default 0: only the exact scale midpoint (4, 4, 4)); its angles are
      meaningless there.

    The 90-degree grid partitions the sphere like the octants, but its
    boundary rule differs (a point with a = 0 and d > 0 is at phi = 90, in the
    A- bin) and it has an origin class; use ``octant`` for the paper recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIMENSIONS = ("arousal", "valence", "dominance")
"""Output order of every A/V/D array in this package."""

SCALE_MIN, SCALE_MAX = 1.0, 7.0

OCTANT_NAMES = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")
# Signs (A, V, D) of each octant, in class order.
_OCTANT_SIGNS = (
    (+1, +1, +1),
    (-1, +1, +1),
    (-1, -1, +1),
    (+1, -1, +1),
    (+1, +1, -1),
    (-1, +1, -1),
    (-1, -1, -1),
    (+1, -1, -1),
)
# _OCTANT_LOOKUP[a >= 0, v >= 0, d >= 0] is the octant's class index.
_OCTANT_LOOKUP = np.zeros((2, 2, 2), dtype=np.int64)
for _index, _signs in enumerate(_OCTANT_SIGNS):
    _OCTANT_LOOKUP[tuple(int(sign > 0) for sign in _signs)] = _index
GRID_DELTAS = (30, 45, 60, 90)


def to_unit(x: np.ndarray) -> np.ndarray:
    """Map the 1-7 scale to the [0, 1] regression targets."""
    return (np.asarray(x, dtype=np.float64) - SCALE_MIN) / (SCALE_MAX - SCALE_MIN)


def from_unit(u: np.ndarray) -> np.ndarray:
    """Map [0, 1] predictions back to the 1-7 scale, clipped to [1, 7]."""
    return MODEL_SCALE.from_unit(u)


@dataclass(frozen=True)
class Scale:
    """The rating scale ``[low, high]`` of a corpus's labels, and the linear map onto the model's 1-7
    (:data:`MODEL_SCALE`; see the module docstring). Raises ValueError unless low < high, both finite."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"a rating scale is two finite numbers low < high, got [{self.low}, {self.high}]")

    @property
    def label(self) -> str:
        """``1-7``, ``1-5``, or ``[-1, 1]`` for a scale that starts below 0."""
        low, high = f"{self.low:g}", f"{self.high:g}"
        return f"{low}-{high}" if self.low >= 0 else f"[{low}, {high}]"

    @property
    def interval(self) -> str:
        """``[1, 5]``."""
        return f"[{self.low:g}, {self.high:g}]"

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Whether each value is a number on the scale."""
        x = np.asarray(x, dtype=np.float64)
        return np.isfinite(x) & (x >= self.low) & (x <= self.high)

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Values on this scale mapped onto 1-7 (exactly the values for :data:`MODEL_SCALE`)."""
        factor = (SCALE_MAX - SCALE_MIN) / (self.high - self.low)
        return (np.asarray(x, dtype=np.float64) - self.low) * factor + SCALE_MIN

    def from_model(self, x: np.ndarray) -> np.ndarray:
        """Values on 1-7 mapped onto this scale."""
        factor = (self.high - self.low) / (SCALE_MAX - SCALE_MIN)
        return (np.asarray(x, dtype=np.float64) - SCALE_MIN) * factor + self.low

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """[0, 1] predictions on this scale, clipped to it (:func:`from_unit` for :data:`MODEL_SCALE`)."""
        x = np.asarray(u, dtype=np.float64) * (self.high - self.low) + self.low
        return np.clip(x, self.low, self.high)


MODEL_SCALE = Scale(SCALE_MIN, SCALE_MAX)
"""MSP-Podcast's 1-7, on which label tables keep A/V/D whatever the corpus."""


def centre(x: np.ndarray) -> np.ndarray:
    """Map the 1-7 scale to [-1, 1] with the midpoint 4 at 0."""
    return 2.0 * to_unit(x) - 1.0


def to_spherical(c: np.ndarray) -> np.ndarray:
    """Centred (..., 3) points in A, V, D order to (..., 3) of (r, theta, phi) in radians."""
    c = np.asarray(c, dtype=np.float64)
    a, v, d = c[..., 0], c[..., 1], c[..., 2]
    r = np.sqrt(a * a + v * v + d * d)
    # arccos(v / r), computed as atan2 so that it stays exact near the poles (arccos loses
    # half the digits there: the round trip of (1e-5, 0.875, 1e-5) was off by 2e-12).
    theta = np.where(r > 0, np.arctan2(np.hypot(a, d), v), 0.0)
    phi = np.where(r > 0, np.arctan2(d, a), 0.0)
    phi = np.where(phi == -np.pi, np.pi, phi)  # keep phi in (-pi, pi]
    return np.stack([r, theta, phi], axis=-1)


def from_spherical(s: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_spherical`: (r, theta, phi) to centred (a, v, d)."""
    s = np.asarray(s, dtype=np.float64)
    r, theta, phi = s[..., 0], s[..., 1], s[..., 2]
    return np.stack(
        [r * np.sin(theta) * np.cos(phi), r * np.cos(theta), r * np.sin(theta) * np.sin(phi)],
        axis=-1,
    )


@dataclass(frozen=True)
class RegionSet:
    """A partition of the emotion sphere into the auxiliary task's classes.

    ``name`` is ``"octant"`` or ``"sphereN"`` with N the grid's angle interval
    in degrees (30, 45, 60 or 90); see the module docstring for the rules.
    """

    name: str = "octant"
    origin_radius: float = 0.0

    def __post_init__(self) -> None:
        grid = self.name.startswith("sphere") and self.name[6:] in {str(d) for d in GRID_DELTAS}
        if self.name != "octant" and not grid:
            raise ValueError(
                f"unknown region set {self.name!r}: use 'octant' or 'sphere30', 'sphere45', 'sphere60', 'sphere90'"
            )
        if self.origin_radius < 0:
            raise ValueError("origin_radius must be >= 0")

    @property
    def delta(self) -> int | None:
        """The grid's angle interval in degrees (None for octants)."""
        return None if self.name == "octant" else int(self.name[6:])

    @property
    def _grid(self) -> tuple[int, int]:
        assert self.delta is not None
        return 360 // self.delta, 180 // self.delta

    @property
    def num_classes(self) -> int:
        if self.delta is None:
            return len(OCTANT_NAMES)
        n_phi, n_theta = self._grid
        return n_phi * n_theta + 1

    @property
    def class_names(self) -> list[str]:
        if self.delta is None:
            return list(OCTANT_NAMES)
        n_phi, n_theta = self._grid
        names = ["origin"]
        for t in range(n_theta):
            for p in range(n_phi):
                names.append(
                    f"theta{t * self.delta:03d}-{(t + 1) * self.delta:03d}"
                    f"_phi{p * self.delta:03d}-{(p + 1) * self.delta:03d}"
                )
        return names

    def assign(self, avd: np.ndarray) -> np.ndarray:
        """Region index of each (..., 3) A/V/D point on the 1-7 scale."""
        c = centre(avd)
        if self.delta is None:
            positive = (c >= 0).astype(np.int64)
            return _OCTANT_LOOKUP[positive[..., 0], positive[..., 1], positive[..., 2]]
        n_phi, n_theta = self._grid
        r, theta, phi = np.moveaxis(to_spherical(c), -1, 0)
        step = np.deg2rad(self.delta)
        # Round to 1e-9 rad first so that points meant to lie on a boundary
        # (e.g. phi = 90 degrees from exact label values) do not fall short of it.
        phi_bin = np.floor(np.round(np.mod(phi, 2 * np.pi) / step, 9)).astype(int) % n_phi
        theta_bin = np.minimum(np.floor(np.round(theta / step, 9)).astype(int), n_theta - 1)
        grid = 1 + theta_bin * n_phi + phi_bin
        return np.where(r <= self.origin_radius + 1e-12, 0, grid)

    def class_weights(self, labels: np.ndarray) -> np.ndarray:
        """``w_c = N / (K * count_c)`` over the training labels, 0 for an empty class."""
        labels = np.asarray(labels, dtype=np.int64)
        counts = np.bincount(labels, minlength=self.num_classes).astype(np.float64)
        weights = np.zeros(self.num_classes)
        present = counts > 0
        weights[present] = len(labels) / (self.num_classes * counts[present])
        return weights
