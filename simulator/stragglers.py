"""Stragglers and faults: how long one worker's compute phase really takes.

A worker's compute phase of nominal length ``base_s`` takes

    base_s x noise x slow_factor,

stretched further by any transient slowdown episode it overlaps, and it is lost when the
worker fails in the middle of it.

- **Noise** is one draw per compute phase from a factor distribution of mean 1
  (:class:`Deterministic`, :class:`LogNormal`, :class:`Pareto`) or of a given mean
  (:class:`Exponential`, the textbook straggler: a barrier over N workers waits
  ``mean x H_N``, see :func:`expected_max`).
- **Persistently slow workers** (``slow_workers``) compute ``slow_factor`` times slower,
  always.
- **Transient slowdowns** (:class:`TransientSlowdown`): each worker alternates between
  normal periods, exponential with mean ``1 / rate_per_s`` (episodes arrive as a Poisson
  process while none is running), and episodes, exponential with mean
  ``mean_duration_s``, during which work progresses ``factor`` times slower. In the long
  run a fraction ``rate x duration / (1 + rate x duration)`` of wall time is slowed
  (alternating renewal process); the timeline starts in that stationary state, so the
  fraction holds at every instant, not only in the long run.
- **Failures** (:class:`Failures`): failure instants form a Poisson process of mean
  inter-arrival ``mtbf_s`` per worker; a failed worker is back ``restart_s`` later.

Randomness: worker ``w`` under scenario ``seed`` draws from three named streams,
``stragglers.worker-{w}.noise``, ``.transient`` and ``.failures``
(:func:`models.random_streams.stream`), so adding a worker never changes another
worker's draws. The episode timeline and the failure instants are generated lazily,
from time 0, in chunks of a fixed size schedule, so they depend on the seed and the
worker only, never on the order in which they are queried. The noise stream is consumed
one draw per :meth:`WorkerClock.compute_time_s` call: the k-th compute phase of a worker
gets its k-th draw.

How the engine uses failures: for a compute phase starting at ``start_s`` and ending at
``end_s`` it asks ``next_failure_s(start_s)``; a failure instant ``f < end_s`` means the
work of that phase is lost, the worker is down until ``f + restart_s``, then it redoes the
whole phase (with a fresh noise draw). Failures that fall while the worker is already down
are absorbed by that restart. :meth:`WorkerClock.run_compute` does exactly this. Failures
outside compute phases (communicating, waiting) are not charged, which keeps a failure's
cost at "the iteration in flight plus the restart".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy.integrate import quad
from scipy.special import ndtri

from models.errors import (
    ConfigError,
    nearest,
    require_choice,
    require_int,
    require_number,
    require_positive,
)
from models.random_streams import stream

# ---------------------------------------------------------------------------------------
# Compute-time factor distributions


def _probability(name: str, p: float) -> float:
    return require_number(name, p, minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class Deterministic:
    """The same factor every time (no noise)."""

    value: float = 1.0

    def __post_init__(self) -> None:
        require_positive("stragglers.value", self.value)

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.value)

    def samples(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, float(self.value))

    @property
    def mean(self) -> float:
        return float(self.value)

    @property
    def variance(self) -> float:
        return 0.0

    def quantile(self, q: float) -> float:
        _probability("q", q)
        return float(self.value)

    def isf(self, p: float) -> float:
        """The x with P(X > x) = p (``quantile(1 - p)``, precise for tiny p)."""
        _probability("p", p)
        return float(self.value)


@dataclass(frozen=True)
class LogNormal:
    """exp(N(mu, sigma^2)) with mu = -sigma^2 / 2, so the mean is exactly 1."""

    sigma: float

    def __post_init__(self) -> None:
        require_positive("stragglers.sigma", self.sigma)

    @property
    def mu(self) -> float:
        return -0.5 * self.sigma**2

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.lognormal(self.mu, self.sigma))

    def samples(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` draws at once, the same as ``size`` calls of :meth:`sample`."""
        return rng.lognormal(self.mu, self.sigma, size)

    @property
    def mean(self) -> float:
        return 1.0

    @property
    def variance(self) -> float:
        return math.expm1(self.sigma**2)

    def quantile(self, q: float) -> float:
        return math.exp(self.mu + self.sigma * float(ndtri(_probability("q", q))))

    def isf(self, p: float) -> float:
        return math.exp(self.mu - self.sigma * float(ndtri(_probability("p", p))))


@dataclass(frozen=True)
class Pareto:
    """Pareto type I with tail index ``alpha`` (P(X > x) ~ x^-alpha), scaled to mean 1.

    The scale (the smallest possible factor) is ``(alpha - 1) / alpha``, so most draws
    are a little faster than nominal and a few are much slower. The variance is
    ``1 / (alpha (alpha - 2))``, infinite for ``alpha <= 2``.
    """

    alpha: float

    def __post_init__(self) -> None:
        require_number("stragglers.alpha", self.alpha, minimum=1.0, exclusive_minimum=True)

    @property
    def scale(self) -> float:
        return (self.alpha - 1.0) / self.alpha

    def sample(self, rng: np.random.Generator) -> float:
        # numpy's pareto() is the Lomax (Pareto II) law; 1 + Lomax is Pareto I of scale 1.
        return float(self.scale * (1.0 + rng.pareto(self.alpha)))

    def samples(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.scale * (1.0 + rng.pareto(self.alpha, size))

    @property
    def mean(self) -> float:
        return 1.0

    @property
    def variance(self) -> float:
        if self.alpha <= 2.0:
            return math.inf
        return 1.0 / (self.alpha * (self.alpha - 2.0))

    def quantile(self, q: float) -> float:
        return self.isf(1.0 - _probability("q", q))

    def isf(self, p: float) -> float:
        p = _probability("p", p)
        return math.inf if p == 0.0 else self.scale * p ** (-1.0 / self.alpha)


@dataclass(frozen=True)
class Exponential:
    """Exponential factor of the given mean (variance mean^2)."""

    mean: float = 1.0

    def __post_init__(self) -> None:
        require_positive("stragglers.mean", self.mean)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.mean))

    def samples(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.exponential(self.mean, size)

    @property
    def variance(self) -> float:
        return self.mean**2

    def quantile(self, q: float) -> float:
        q = _probability("q", q)
        return math.inf if q == 1.0 else -self.mean * math.log1p(-q)

    def isf(self, p: float) -> float:
        p = _probability("p", p)
        return math.inf if p == 0.0 else -self.mean * math.log(p)


Distribution = Deterministic | LogNormal | Pareto | Exponential
_DISTRIBUTIONS = (Deterministic, LogNormal, Pareto, Exponential)


def expected_max(dist: Distribution, n: int) -> float:
    """E[max of n iid draws of ``dist``]: the mean wait of a barrier over n workers.

    The maximum of n draws is distributed as ``Q(V^(1/n))`` with V uniform on (0, 1), so
    E[max] is the integral of ``isf(1 - v^(1/n))`` over v in (0, 1), done here in
    ``w = 1 - v`` (expm1/log1p keep ``1 - v^(1/n)`` precise for large n). Near w = 0
    a Pareto tail makes the integrand blow up like ``w^(-1/alpha)``; substituting
    ``w = w0 u^k`` turns that into ``u^(k - 1 - k/alpha)``, bounded once
    ``k >= alpha / (alpha - 1)``, so quad meets no singularity at all.
    """
    if not isinstance(dist, _DISTRIBUTIONS):
        raise ConfigError("dist", dist, "one of " + ", ".join(d.__name__ for d in _DISTRIBUTIONS))
    n = require_int("n", n, minimum=1)
    if isinstance(dist, Deterministic):
        return dist.value
    if n == 1:
        return dist.mean

    def max_isf(w: float) -> float:
        return dist.isf(-math.expm1(math.log1p(-w) / n)) if w < 1.0 else dist.isf(1.0)

    k = math.ceil(dist.alpha / (dist.alpha - 1.0)) if isinstance(dist, Pareto) else 2
    w0 = 0.01

    def tail(u: float) -> float:
        return max_isf(w0 * u**k) * w0 * k * u ** (k - 1)

    edges = (w0, 0.5, 0.99, 1.0)
    body = sum(quad(max_isf, lo, hi, epsabs=0.0, epsrel=1e-10, limit=200)[0]
               for lo, hi in zip(edges, edges[1:], strict=False))
    return body + quad(tail, 0.0, 1.0, epsabs=0.0, epsrel=1e-10, limit=200)[0]


# ---------------------------------------------------------------------------------------
# Transient slowdowns and failures


@dataclass(frozen=True)
class TransientSlowdown:
    """Episodes arriving at ``rate_per_s`` (while none runs), lasting exponential time of
    mean ``mean_duration_s``, during which compute runs ``factor`` times slower."""

    rate_per_s: float
    mean_duration_s: float
    factor: float

    def __post_init__(self) -> None:
        require_positive("stragglers.transient_rate_per_s", self.rate_per_s)
        require_positive("stragglers.transient_duration_s", self.mean_duration_s)
        require_number("stragglers.transient_factor", self.factor, minimum=1.0)

    @property
    def slowed_fraction(self) -> float:
        """Fraction of wall time spent in episodes (alternating renewal process)."""
        busy = self.rate_per_s * self.mean_duration_s
        return busy / (1.0 + busy)


@dataclass(frozen=True)
class Failures:
    """Failure instants with exponential inter-arrival of mean ``mtbf_s``; a failed worker
    is back ``restart_s`` later."""

    mtbf_s: float
    restart_s: float = 0.0

    def __post_init__(self) -> None:
        require_positive("stragglers.failure_mtbf_s", self.mtbf_s)
        require_number("stragglers.restart_s", self.restart_s, minimum=0.0)


# Lazy timelines grow by chunks of doubling size: amortised O(1) per event, and the
# chunk schedule is fixed, so what is generated depends on how far it reaches, never on
# the order of the queries.
_FIRST_CHUNK = 64
_MAX_CHUNK = 65536


class _Timeline:
    """Increasing instants from time 0, generated lazily: each chunk appends
    ``cumsum(rng.standard_exponential((k, 2)) * scales)``."""

    def __init__(self, rng: np.random.Generator, scales: tuple[float, float]):
        self._rng = rng
        self._scales = np.asarray(scales, dtype=float)
        self._chunk = _FIRST_CHUNK
        self.edges = np.array([0.0])

    def cover(self, t: float) -> np.ndarray:
        """The edges, extended until the last one is beyond ``t``."""
        while self.edges[-1] <= t:
            steps = self._rng.standard_exponential((self._chunk, 2)) * self._scales
            self.edges = np.concatenate([self.edges, self.edges[-1] + np.cumsum(steps)])
            self._chunk = min(2 * self._chunk, _MAX_CHUNK)
        return self.edges


class ComputePhase(NamedTuple):
    """Outcome of :meth:`WorkerClock.run_compute`."""

    end_s: float  # when the phase's work is finally done
    failures: int  # how many times it was lost and redone


class WorkerClock:
    """One worker's straggler draws under one seed (see the module notes)."""

    def __init__(self, model: StragglerModel, worker: int, seed: int):
        self.worker = require_int("worker", worker, minimum=0)
        prefix = f"stragglers.worker-{worker}"
        self._noise = model.noise
        self._noise_rng = stream(seed, f"{prefix}.noise")
        self._slow = model.slow_factor if worker in model.slow_workers else 1.0
        self._episodes: _Timeline | None = None
        self._factor = 1.0
        self._slowed_first = False
        if model.transient is not None:
            transient = model.transient
            rng = stream(seed, f"{prefix}.transient")
            self._slowed_first = bool(rng.random() < transient.slowed_fraction)
            normal_s = 1.0 / transient.rate_per_s
            episode_s = transient.mean_duration_s
            first, second = (episode_s, normal_s) if self._slowed_first else (normal_s, episode_s)
            # Starting inside a period, the time left in it is exponential too
            # (memoryless), so the stationary start needs no special first interval.
            self._episodes = _Timeline(rng, (first, second))
            self._factor = transient.factor
        self._failures: _Timeline | None = None
        self.restart_s = 0.0
        if model.failures is not None:
            mtbf_s = model.failures.mtbf_s
            self._failures = _Timeline(stream(seed, f"{prefix}.failures"), (mtbf_s, mtbf_s))
            self.restart_s = model.failures.restart_s

    @property
    def slow_factor(self) -> float:
        """The persistent slowness of this worker (1 for a normal one)."""
        return self._slow

    def compute_time_s(self, start_s: float, base_s: float) -> float:
        """Wall duration of a compute phase of nominal length ``base_s`` from ``start_s``.

        Work progresses at 1 / (noise x slow) nominal seconds per second, ``factor``
        times slower while an episode runs. Draws the next noise factor.
        """
        # No checks here: called once per compute phase with times the engine made
        # from validated costs.
        unstretched_s = self._noise.sample(self._noise_rng) * self._slow * base_s
        if self._episodes is None or self._factor == 1.0:
            return unstretched_s
        edges = self._episodes.cover(start_s)
        i = int(np.searchsorted(edges, start_s, side="right")) - 1
        t, left_s = start_s, unstretched_s
        while True:
            if i + 1 >= len(edges):
                edges = self._episodes.cover(edges[-1])
            stretch = self._factor if (i % 2 == 0) == self._slowed_first else 1.0
            room_s = (edges[i + 1] - t) / stretch
            if left_s <= room_s:
                return t + left_s * stretch - start_s
            left_s -= room_s
            t = edges[i + 1]
            i += 1

    def next_failure_s(self, after_s: float) -> float:
        """The first failure instant >= ``after_s`` (``math.inf`` without failures)."""
        if self._failures is None:
            return math.inf
        edges = self._failures.cover(after_s)
        # edges[0] == 0 is the origin, not a failure.
        i = max(1, int(np.searchsorted(edges, after_s, side="left")))
        return float(edges[i])

    def run_compute(self, start_s: float, base_s: float) -> ComputePhase:
        """A compute phase redone after each failure inside it (see the module notes)."""
        begin_s, duration_s, failures = plan_compute(self, start_s, base_s)
        return ComputePhase(begin_s + duration_s, len(failures))


def plan_compute(clock: Any, start_s: float, base_s: float
                 ) -> tuple[float, float, list[tuple[float, float]]]:
    """``(begin_s, duration_s, failures)`` of a compute phase of nominal length ``base_s``
    that can start at ``start_s`` on ``clock`` (a :class:`WorkerClock` or any object with
    its ``compute_time_s``, ``next_failure_s`` and ``restart_s``).

    Each failure inside the phase loses its work: the worker is back ``restart_s`` later
    and starts the phase over, with a new noise draw. ``failures`` lists ``(failure_s,
    back_s)`` of those that hit the phase, in time order.
    """
    begin = after = start_s
    failures: list[tuple[float, float]] = []
    while True:
        duration = clock.compute_time_s(begin, base_s)
        failure = clock.next_failure_s(after)
        if failure >= begin + duration:
            return begin, duration, failures
        back = failure + clock.restart_s
        failures.append((failure, back))
        begin = back
        after = max(back, math.nextafter(failure, math.inf))


# ---------------------------------------------------------------------------------------
# The model


#: The [stragglers] scenario section, with its defaults.
SECTION_DEFAULTS: dict[str, Any] = {
    "noise": "none",
    "sigma": 0.1,
    "alpha": 3.0,
    "slow_workers": 0,
    "slow_factor": 1.0,
    "transient_rate_per_s": 0.0,
    "transient_duration_s": 0.0,
    "transient_factor": 1.0,
    "failure_mtbf_s": 0.0,
    "restart_s": 0.0,
}
NOISES = ("none", "lognormal", "pareto", "exponential")


@dataclass(frozen=True)
class StragglerModel:
    """Everything that makes workers slower than their nominal compute time."""

    noise: Distribution = field(default_factory=Deterministic)
    slow_workers: tuple[int, ...] = ()
    slow_factor: float = 1.0
    transient: TransientSlowdown | None = None
    failures: Failures | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.noise, _DISTRIBUTIONS):
            raise ConfigError("stragglers.noise", self.noise,
                              "one of " + ", ".join(d.__name__ for d in _DISTRIBUTIONS))
        if not isinstance(self.slow_workers, tuple):
            raise ConfigError("stragglers.slow_workers", self.slow_workers,
                              "a tuple of worker indices")
        for worker in self.slow_workers:
            require_int("stragglers.slow_workers", worker, minimum=0)
        if len(set(self.slow_workers)) != len(self.slow_workers):
            raise ConfigError("stragglers.slow_workers", self.slow_workers,
                              "distinct worker indices")
        require_number("stragglers.slow_factor", self.slow_factor, minimum=1.0)
        if self.transient is not None and not isinstance(self.transient, TransientSlowdown):
            raise ConfigError("stragglers.transient", self.transient,
                              "a TransientSlowdown or None")
        if self.failures is not None and not isinstance(self.failures, Failures):
            raise ConfigError("stragglers.failures", self.failures, "a Failures or None")

    def clock(self, worker: int, seed: int) -> WorkerClock:
        return WorkerClock(self, worker, seed)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> StragglerModel:
        """The model of a [stragglers] scenario section (keys and defaults:
        :data:`SECTION_DEFAULTS`). Every value given is checked, used or not;
        ``transient_rate_per_s = 0`` means no episodes, ``failure_mtbf_s = 0`` no failures.
        """
        for key in section:
            if key not in SECTION_DEFAULTS:
                raise ConfigError(f"stragglers.{key}", section[key], "a known key: " +
                                  ", ".join(sorted(SECTION_DEFAULTS)),
                                  nearest(key, SECTION_DEFAULTS))
        s = {**SECTION_DEFAULTS, **section}
        noises = {
            "none": Deterministic(),
            "lognormal": LogNormal(s["sigma"]),
            "pareto": Pareto(s["alpha"]),
            "exponential": Exponential(),
        }
        noise = noises[require_choice("stragglers.noise", s["noise"], NOISES)]
        slow_count = require_int("stragglers.slow_workers", s["slow_workers"], minimum=0)
        rate = require_number("stragglers.transient_rate_per_s", s["transient_rate_per_s"],
                              minimum=0.0)
        duration = require_number("stragglers.transient_duration_s", s["transient_duration_s"],
                                  minimum=0.0)
        factor = require_number("stragglers.transient_factor", s["transient_factor"],
                                minimum=1.0)
        mtbf = require_number("stragglers.failure_mtbf_s", s["failure_mtbf_s"], minimum=0.0)
        restart = require_number("stragglers.restart_s", s["restart_s"], minimum=0.0)
        return cls(
            noise=noise,
            slow_workers=tuple(range(slow_count)),
            slow_factor=s["slow_factor"],
            transient=TransientSlowdown(rate, duration, factor) if rate > 0.0 else None,
            failures=Failures(mtbf, restart) if mtbf > 0.0 else None,
        )
