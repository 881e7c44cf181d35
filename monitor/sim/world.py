"""What a fixed camera's world does over time: the clock and daylight, clouds, the infrared
switch, rain showers and objects crossing the view. Numbers only; :mod:`monitor.sim.fleet`
turns them into pixels.

Every quantity is a pure function of the camera's seed and the time ``s`` in seconds: nothing is
carried from one frame to the next, so any frame can be asked for directly, in any order, at the
cost of the first. Smooth processes are cubic B-splines through knots whose values are hashed
from (seed, stream, knot index) with SplitMix64's finaliser; events (showers, crossings) are
Poisson arrivals drawn per fixed time slot from a generator seeded by (seed, stream, slot), and
an event is found by looking back over the few slots that can still reach ``s``.

Examples
--------
>>> world = World(seed=3, options=Living(day_s=600, start_hour=9))
>>> world.context(0.0)
FrameContext(time_of_day='day', ir=False, rain=False)
>>> world.context(300.0).time_of_day  # 9:00 + half a day = 21:00
'night'
>>> world.context(300.0) == World(seed=3, options=Living(day_s=600, start_hour=9)).context(300.0)
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Living", "FrameContext", "TIMES_OF_DAY", "World", "Shower", "Crossing"]

TIMES_OF_DAY = ("day", "dawn", "dusk", "night")

# Daylight: the sun's elevation proxy e = -cos(2 pi hour / 24) (sunrise 06:00, sunset 18:00);
# full day above _DAY_E, full night below _NIGHT_E, dawn and dusk in between (about 2 h each).
_NIGHT_E, _DAY_E = -0.3, 0.2
# The infrared switch reads a light meter (daylight x clouds) once a second: IR on below
# _IR_ON, off above _IR_OFF (times a per-camera factor), unchanged in between.
_IR_ON, _IR_OFF = 0.12, 0.25
_IR_STEP_S = 1.0
_IR_CHUNK = 256  # readings per look back, doubling
# Clouds: three octaves of smooth noise (knot spacing s, weight; the squared weights sum to 1).
_CLOUD_OCTAVES = ((20.0, 0.35), (60.0, 0.55), (150.0, 0.76))
# Crossings: arrivals are drawn per slot; nothing crosses for longer than _CROSS_MAX_S.
_CROSS_SLOT_S = 10.0
_CAR_SHARE = 0.6
_CAR_S, _PERSON_S = (3.0, 9.0), (12.0, 30.0)  # crossing times, uniform
_CROSS_MAX_S = max(_CAR_S[1], _PERSON_S[1])
_MEAN_CROSS_S = _CAR_SHARE * sum(_CAR_S) / 2 + (1 - _CAR_SHARE) * sum(_PERSON_S) / 2
# Showers: arrivals are drawn per hour; a shower lasts Exp(rain_s), at most _SHOWER_CAP x rain_s.
_SHOWER_SLOT_S = 3600.0
_SHOWER_CAP = 6.0
_SHOWER_RAMP_S = 20.0


@dataclass(frozen=True)
class Living:
    """Options of a living camera (times are stream seconds, ``t / fps``).

    day_s : length of a day; 0 stops the clock at ``start_hour`` (the default 9:00: always day).
    start_hour : time of day at ``t = 0``.
    traffic : mean number of objects in view in full daylight (a quarter of that at night).
    rain_per_hour : showers starting per hour (a Poisson process; overlapping ones merge).
    rain_s : mean length of a shower.
    clouds : standard deviation of the clouds' log-gain on daylight.
    ir : whether the camera switches to infrared at night.
    """

    day_s: float = 600.0
    start_hour: float = 9.0
    traffic: float = 2.0
    rain_per_hour: float = 1.0
    rain_s: float = 180.0
    clouds: float = 0.08
    ir: bool = True

    def __post_init__(self) -> None:
        for name in ("day_s", "traffic", "rain_per_hour", "clouds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not (math.isfinite(self.rain_s) and self.rain_s > 0):
            raise ValueError(f"rain_s must be finite and > 0, got {self.rain_s!r}")
        if not 0 <= self.start_hour < 24:
            raise ValueError(f"start_hour must be in [0, 24), got {self.start_hour!r}")


@dataclass(frozen=True)
class FrameContext:
    """What a producer could send with a frame: time of day, infrared mode, rain."""

    time_of_day: str  # one of TIMES_OF_DAY
    ir: bool
    rain: bool

    def to_dict(self) -> dict[str, str | bool]:
        """As a JSON-ready mapping (a frame envelope's ``meta``)."""
        return {"time_of_day": self.time_of_day, "ir": self.ir, "rain": self.rain}

    @property
    def label(self) -> str:
        """As a producer's context label (header ``context``): the time of day, ``/rain`` when
        raining."""
        return self.time_of_day + ("/rain" if self.rain else "")


@dataclass(frozen=True)
class Shower:
    """One rain shower: ``strength`` in (0, 1], ramping in and out over ``ramp`` seconds."""

    start: float
    duration: float
    strength: float
    key: tuple[int, int]  # (slot, index): names the shower, e.g. to place its droplets

    @property
    def ramp(self) -> float:
        return min(_SHOWER_RAMP_S, self.duration / 4)

    def intensity(self, s: float) -> float:
        """Strength at time ``s`` (0 outside the shower)."""
        into, left = s - self.start, self.start + self.duration - s
        if into < 0 or left <= 0:
            return 0.0
        return self.strength * min(1.0, into / self.ramp, left / self.ramp)


@dataclass(frozen=True)
class Crossing:
    """One object crossing the view: a car or a person on a straight line, edge to edge.

    ``lane`` and ``drift`` are fractions of the frame height (where it walks or drives, and how
    far that moves while crossing); ``size`` is its height as a fraction of the frame height.
    """

    kind: str  # "car" | "person"
    start: float
    duration: float
    direction: int  # +1 left to right, -1 right to left
    lane: float
    drift: float
    size: float
    colour: tuple[int, int, int]
    trim: tuple[int, int, int]  # windows of a car, head of a person

    def progress(self, s: float) -> float:
        """Fraction of the crossing done at ``s`` (in [0, 1) while in view)."""
        return (s - self.start) / self.duration


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective scramble of uint64 values."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash_uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1), one per integer ``index``, fixed by (seed, stream, index)."""
    index = np.asarray(index, np.int64)
    key = _mix(np.array([seed * 0x10001 + stream], np.uint64))
    bits = _mix(_mix(index.reshape(-1).astype(np.uint64)) ^ key)  # 1-d: uint64 arrays wrap silently
    return ((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(index.shape)


def _smooth_noise(
    seed: int, stream: int, s, octaves: tuple[tuple[float, float], ...]
) -> np.ndarray:
    """A smooth random process of about unit variance at times ``s``: the sum over ``octaves``
    (knot spacing, weight; squared weights summing to 1) of cubic B-splines through independent
    unit-variance uniform knots. An octave's correlation falls to ~0.4 at a lag of one knot
    spacing and to 0 at four; with several knots in play the sum is close to Gaussian."""
    s = np.asarray(s, np.float64)
    spacing = np.array([o[0] for o in octaves]).reshape((-1,) + (1,) * s.ndim)
    u = s / spacing
    j = np.floor(u)
    f = u - j
    weights = (
        (1 - f) ** 3 / 6,
        (3 * f**3 - 6 * f**2 + 4) / 6,
        (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
        f**3 / 6,
    )
    # One hash for every knot of every octave: knot j of octave i is index j * len(octaves) + i.
    octave = np.arange(len(octaves)).reshape(spacing.shape)
    j = j.astype(np.int64)
    knots = _hash_uniform(
        seed, stream, np.stack([(j + k - 1) * len(octaves) + octave for k in range(4)])
    )
    knots = (knots - 0.5) * math.sqrt(12.0)  # unit variance
    per_octave = sum(w * knots[k] for k, w in enumerate(weights)) / math.sqrt(
        0.48
    )  # sum w^2: 0.46..0.5
    amplitude = np.array([o[1] for o in octaves]).reshape(spacing.shape)
    return (amplitude * per_octave).sum(axis=0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class World:
    """The world one camera (``seed``) sees under ``options``; every method is pure in ``s``."""

    seed: int
    options: Living
    ir_factor: float = field(init=False)  # the camera's own IR thresholds, x 0.8 .. 1.25

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 8])
        object.__setattr__(
            self, "ir_factor", float(np.exp(rng.uniform(math.log(0.8), math.log(1.25))))
        )

    # --- clock and light ------------------------------------------------------------------

    def hour(self, s):
        """Time of day in hours [0, 24) at ``s`` (scalar or array)."""
        day = self.options.day_s
        hours = self.options.start_hour + (24.0 * np.asarray(s, np.float64) / day if day else 0.0)
        return np.mod(hours, 24.0)

    def elevation(self, s):
        """Sun elevation proxy in [-1, 1]: -cos(2 pi hour / 24); 0 at 06:00 and 18:00."""
        return -np.cos(2.0 * np.pi * self.hour(s) / 24.0)

    def daylight(self, s):
        """Daylight in [0, 1]: 1 in full day, 0 in full night, smooth through dawn and dusk."""
        return _smoothstep((self.elevation(s) - _NIGHT_E) / (_DAY_E - _NIGHT_E))

    def clouds(self, s):
        """The clouds' log-gain on daylight (sd ``options.clouds``), varying over 20 s ..
        minutes."""
        return self.options.clouds * _smooth_noise(self.seed, 20, s, _CLOUD_OCTAVES)

    def meter(self, s):
        """What a light meter reads: daylight dimmed or brightened by the clouds."""
        return self.daylight(s) * np.exp(self.clouds(s))

    def time_of_day(self, s: float) -> str:
        d = float(self.daylight(s))
        if d >= 1.0:
            return "day"
        if d <= 0.0:
            return "night"
        return "dawn" if float(self.hour(s)) < 12.0 else "dusk"

    def ir(self, s: float) -> bool:
        """Whether the camera is in infrared mode at ``s``.

        The switch reads the meter every second: below the low threshold it turns IR on, above
        the high one off, in between it stays as it was, so clouds at dusk do not make it
        flicker. "As it was" is found by reading the meter backwards to the last reading outside
        the band (a running clock finds one within a day); a clock stopped inside the band
        decides by daylight alone against the band's middle.
        """
        if not self.options.ir:
            return False
        low, high = _IR_ON * self.ir_factor, _IR_OFF * self.ir_factor
        k = math.floor(s / _IR_STEP_S)
        oldest = k - math.ceil(self.options.day_s / _IR_STEP_S)
        first, size = k, 1  # the reading now, then older ones in chunks of 256, 512, ...
        while first >= oldest:
            light = self.meter(np.arange(first, first - size, -1) * _IR_STEP_S)
            outside = np.flatnonzero((light < low) | (light > high))
            if outside.size:
                return bool(light[outside[0]] < low)
            first -= size
            size = _IR_CHUNK if size == 1 else 2 * size
        return bool(self.daylight(k * _IR_STEP_S) < (low + high) / 2)

    # --- rain -----------------------------------------------------------------------------

    def showers(self, s: float) -> list[Shower]:
        """The showers under way at ``s``."""
        reach = _SHOWER_CAP * self.options.rain_s
        slots = range(math.floor((s - reach) / _SHOWER_SLOT_S), math.floor(s / _SHOWER_SLOT_S) + 1)
        return [
            x
            for slot in slots
            for x in _showers_in_slot(self, slot)
            if x.start <= s < x.start + x.duration
        ]

    def rain(self, s: float) -> tuple[float, Shower | None]:
        """Rain intensity in [0, 1] at ``s`` and the strongest shower under way (or None)."""
        showers = self.showers(s)
        if not showers:
            return 0.0, None
        strongest = max(showers, key=lambda x: x.intensity(s))
        return strongest.intensity(s), strongest

    # --- objects --------------------------------------------------------------------------

    def crossings(self, s: float) -> list[Crossing]:
        """The objects in view at ``s``, farthest (highest in the frame) first."""
        slots = range(
            math.floor((s - _CROSS_MAX_S) / _CROSS_SLOT_S), math.floor(s / _CROSS_SLOT_S) + 1
        )
        found = [
            c
            for slot in slots
            for c in _crossings_in_slot(self, slot)
            if 0.0 <= c.progress(s) < 1.0
        ]
        return sorted(found, key=lambda c: c.lane)

    def traffic_share(self, s):
        """Traffic relative to daytime: 0.25 at night, rising with daylight to 1."""
        return 0.25 + 0.75 * self.daylight(s)

    # --- context --------------------------------------------------------------------------

    def context(self, s: float) -> FrameContext:
        """Time of day, infrared mode and rain at ``s``."""
        return FrameContext(self.time_of_day(s), self.ir(s), bool(self.showers(s)))


@functools.lru_cache(maxsize=256)
def _showers_in_slot(world: World, slot: int) -> tuple[Shower, ...]:
    o = world.options
    rng = np.random.default_rng([world.seed, 10, slot + (1 << 40)])  # seeds must be >= 0
    n = int(rng.poisson(o.rain_per_hour * _SHOWER_SLOT_S / 3600.0))
    starts = slot * _SHOWER_SLOT_S + rng.uniform(0.0, _SHOWER_SLOT_S, n)
    durations = np.minimum(rng.exponential(o.rain_s, n), _SHOWER_CAP * o.rain_s)
    strengths = rng.uniform(0.4, 1.0, n)
    return tuple(
        Shower(float(a), float(d), float(k), (slot, i))
        for i, (a, d, k) in enumerate(zip(starts, durations, strengths, strict=True))
    )


_CAR_COLOURS = np.array(
    [
        (235, 235, 232),
        (180, 182, 186),
        (25, 25, 28),
        (110, 112, 118),
        (160, 25, 30),
        (30, 55, 130),
        (35, 75, 50),
        (200, 170, 60),
    ],
    np.float64,
)


def _rgb(row: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in row)
    return r, g, b


@functools.lru_cache(maxsize=256)
def _crossings_in_slot(world: World, slot: int) -> tuple[Crossing, ...]:
    # Arrivals at the daytime rate, thinned by the traffic share at their start time.
    rate = world.options.traffic / _MEAN_CROSS_S
    rng = np.random.default_rng([world.seed, 5, slot + (1 << 40)])
    n = int(rng.poisson(rate * _CROSS_SLOT_S))
    starts = slot * _CROSS_SLOT_S + rng.uniform(0.0, _CROSS_SLOT_S, n)
    keep = rng.random(n) < world.traffic_share(starts)
    car = rng.random(n) < _CAR_SHARE
    car_s, person_s = rng.uniform(*_CAR_S, n), rng.uniform(*_PERSON_S, n)
    direction = np.where(rng.random(n) < 0.5, 1, -1)
    lane = rng.uniform(0.45, 0.95, n)
    drift = rng.uniform(-0.06, 0.06, n)
    perspective = 0.45 + 0.85 * lane  # nearer (lower) objects look bigger
    size = np.where(car, rng.uniform(0.08, 0.13, n), rng.uniform(0.12, 0.2, n)) * perspective
    paint = _CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS), n)] + rng.normal(0.0, 8.0, (n, 3))
    clothes = rng.uniform(20.0, 220.0, (n, 3))
    colour = np.clip(np.where(car[:, None], paint, clothes), 0, 255).astype(int)
    skin = rng.uniform(0.0, 1.0, n)[:, None] * np.array([(-120, -95, -75)]) + np.array(
        [(225, 185, 150)]
    )
    trim = np.where(car[:, None], np.array([(45, 55, 65)]), skin).astype(int)
    return tuple(
        Crossing(
            "car" if car[i] else "person",
            float(starts[i]),
            float(car_s[i] if car[i] else person_s[i]),
            int(direction[i]),
            float(lane[i]),
            float(drift[i]),
            float(size[i]),
            _rgb(colour[i]),
            _rgb(trim[i]),
        )
        for i in range(n)
        if keep[i]
    )
