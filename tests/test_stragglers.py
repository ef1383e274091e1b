import math

import numpy as np
import pytest
from scipy.special import gammaln

from models.errors import ConfigError
from models.random_streams import stream
from simulator.stragglers import (
    Deterministic,
    Exponential,
    Failures,
    LogNormal,
    Pareto,
    StragglerModel,
    TransientSlowdown,
    expected_max,
)

SAMPLES = 200_000


def _raw_moments(dist):
    """E[X^k], k = 1..4, in closed form."""
    if isinstance(dist, LogNormal):
        return [math.exp(k * dist.mu + k * k * dist.sigma**2 / 2) for k in range(1, 5)]
    if isinstance(dist, Exponential):
        return [math.factorial(k) * dist.mean**k for k in range(1, 5)]
    if isinstance(dist, Pareto):
        return [dist.alpha * dist.scale**k / (dist.alpha - k) for k in range(1, 5)]
    raise TypeError(dist)


def _draw(dist, n, seed=1):
    return dist.samples(stream(seed, "test.samples"), n)


@pytest.mark.parametrize("dist", [Deterministic(1.2), LogNormal(0.3), Exponential(2.0),
                                  Pareto(1.5)])
def test_vector_draws_equal_one_at_a_time_draws(dist):
    rng = stream(0, "test.one-by-one")
    one_by_one = [dist.sample(rng) for _ in range(100)]
    assert np.array_equal(dist.samples(stream(0, "test.one-by-one"), 100), one_by_one)


@pytest.mark.parametrize("dist", [LogNormal(0.3), LogNormal(0.8), Exponential(2.5), Pareto(5.0)])
def test_sample_mean_and_variance_match_theory_within_clt_bounds(dist):
    m1, m2, m3, m4 = _raw_moments(dist)
    assert dist.mean == pytest.approx(m1, rel=1e-12)
    assert dist.variance == pytest.approx(m2 - m1**2, rel=1e-12)
    central4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
    x = _draw(dist, SAMPLES)
    assert abs(x.mean() - dist.mean) < 5 * math.sqrt(dist.variance / SAMPLES)
    assert abs(x.var() - dist.variance) < 5 * math.sqrt((central4 - dist.variance**2) / SAMPLES)


def test_mean_one_laws_and_infinite_pareto_variance():
    assert LogNormal(0.5).mean == 1.0 and Pareto(1.5).mean == 1.0
    assert Pareto(2.0).variance == math.inf and Pareto(1.5).variance == math.inf
    assert Pareto(3.0).variance == pytest.approx(1 / 3)
    assert Deterministic(1.7).variance == 0.0 and Deterministic(1.7).sample(None) == 1.7


@pytest.mark.parametrize("alpha", [1.5, 3.0])
def test_pareto_survival_has_log_log_slope_minus_alpha(alpha):
    x = np.sort(_draw(Pareto(alpha), SAMPLES, seed=2))
    survival = 1.0 - np.arange(SAMPLES) / SAMPLES
    tail = slice(int(0.9 * SAMPLES), SAMPLES - 200)  # top 10%, without the noisiest points
    slope = np.polyfit(np.log(x[tail]), np.log(survival[tail]), 1)[0]
    assert slope == pytest.approx(-alpha, rel=0.05)
    assert x[0] >= Pareto(alpha).scale


def test_quantiles_invert_the_laws():
    assert Exponential(2.0).quantile(0.5) == pytest.approx(2.0 * math.log(2))
    assert LogNormal(0.4).quantile(0.5) == pytest.approx(math.exp(-0.08))
    assert Pareto(2.0).quantile(0.75) == pytest.approx(0.5 * 0.25**-0.5)
    assert Pareto(2.0).quantile(0.0) == pytest.approx(0.5)
    assert Exponential().quantile(1.0) == math.inf
    assert LogNormal(0.4).isf(1e-3) == pytest.approx(LogNormal(0.4).quantile(1 - 1e-3))
    with pytest.raises(ConfigError, match="q"):
        LogNormal(0.4).quantile(1.5)


@pytest.mark.parametrize("n", [1, 2, 10, 1000, 100_000])
def test_expected_max_of_exponentials_is_mean_times_harmonic_number(n):
    harmonic = sum(1.0 / k for k in range(1, n + 1))
    assert expected_max(Exponential(2.0), n) == pytest.approx(2.0 * harmonic, rel=1e-9)


@pytest.mark.parametrize("alpha", [1.5, 2.5, 4.0])
@pytest.mark.parametrize("n", [2, 64, 10_000])
def test_expected_max_of_paretos_matches_gamma_closed_form(alpha, n):
    # E[max of n Pareto(x_m, a)] = x_m Gamma(n + 1) Gamma(1 - 1/a) / Gamma(n + 1 - 1/a)
    d = Pareto(alpha)
    exact = d.scale * math.exp(gammaln(n + 1) + gammaln(1 - 1 / alpha) - gammaln(n + 1 - 1 / alpha))
    assert expected_max(d, n) == pytest.approx(exact, rel=1e-7)


def test_expected_max_of_lognormals_matches_monte_carlo_and_deterministic_is_its_value():
    d = LogNormal(0.5)
    draws = stream(3, "test.max").lognormal(d.mu, d.sigma, size=(200_000, 16)).max(axis=1)
    assert expected_max(d, 16) == pytest.approx(draws.mean(), rel=0.01)
    assert expected_max(Deterministic(1.3), 50) == 1.3
    with pytest.raises(ConfigError, match="n"):
        expected_max(d, 0)


@pytest.mark.parametrize(("make", "field"), [
    (lambda: LogNormal(-0.1), "stragglers.sigma"),
    (lambda: LogNormal(0.0), "stragglers.sigma"),
    (lambda: Pareto(1.0), "stragglers.alpha"),
    (lambda: Exponential(0.0), "stragglers.mean"),
    (lambda: Deterministic(float("nan")), "stragglers.value"),
    (lambda: TransientSlowdown(0.1, 0.0, 2.0), "stragglers.transient_duration_s"),
    (lambda: TransientSlowdown(0.1, 1.0, 0.5), "stragglers.transient_factor"),
    (lambda: Failures(0.0, 1.0), "stragglers.failure_mtbf_s"),
    (lambda: Failures(10.0, -1.0), "stragglers.restart_s"),
    (lambda: StragglerModel(slow_factor=0.5), "stragglers.slow_factor"),
    (lambda: StragglerModel(slow_workers=(1, 1)), "stragglers.slow_workers"),
    (lambda: StragglerModel(slow_workers=[0]), "stragglers.slow_workers"),
    (lambda: StragglerModel(noise="lognormal"), "stragglers.noise"),
])
def test_bad_parameters_name_their_field(make, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make()


def test_without_episodes_compute_time_is_noise_times_slowness_times_base():
    model = StragglerModel(noise=LogNormal(0.3), slow_workers=(2,), slow_factor=1.5)
    clock = model.clock(2, seed=11)
    reference = stream(11, "stragglers.worker-2.noise")
    for start_s in (0.0, 3.0, 7.5):
        expected = reference.lognormal(LogNormal(0.3).mu, 0.3) * 1.5 * 0.2
        assert clock.compute_time_s(start_s, 0.2) == pytest.approx(expected, rel=1e-12)
    assert model.clock(0, seed=11).slow_factor == 1.0
    assert StragglerModel().clock(0, seed=0).compute_time_s(5.0, 0.25) == pytest.approx(0.25)


def test_same_seed_same_draws_and_adding_workers_leaves_others_unchanged():
    model = StragglerModel(noise=Pareto(2.5), transient=TransientSlowdown(0.5, 1.0, 3.0),
                           failures=Failures(20.0, 1.0))

    def run(workers, seed):
        clocks = [model.clock(w, seed) for w in range(workers)]
        rows = []
        for k in range(50):
            for clock in clocks:
                rows.append((clock.compute_time_s(k * 1.0, 0.5), clock.next_failure_s(k * 1.0)))
        return np.array(rows).reshape(50, workers, 2)

    four, eight = run(4, seed=5), run(8, seed=5)
    assert np.array_equal(four, eight[:, :4])
    assert np.array_equal(four, run(4, seed=5))
    assert not np.array_equal(four, run(4, seed=6))
    assert not np.array_equal(eight[:, 0], eight[:, 1])


def test_episode_timeline_and_failures_do_not_depend_on_query_order():
    model = StragglerModel(transient=TransientSlowdown(0.2, 2.0, 4.0), failures=Failures(30.0))
    starts = np.linspace(0.0, 5000.0, 400)
    order = np.random.default_rng(0).permutation(len(starts))

    def query(indices):
        clock = model.clock(3, seed=9)
        out = {}
        for i in indices:
            out[i] = (clock.compute_time_s(starts[i], 1.5), clock.next_failure_s(starts[i]))
        return [out[i] for i in range(len(starts))]

    assert query(range(len(starts))) == query(order)


def test_transient_slowdown_long_run_matches_alternating_renewal_closed_forms():
    rate, duration, factor = 0.5, 1.0, 3.0
    transient = TransientSlowdown(rate, duration, factor)
    p = rate * duration / (1 + rate * duration)
    assert transient.slowed_fraction == pytest.approx(p)
    clock = StragglerModel(transient=transient).clock(0, seed=4)

    # Back to back phases: over wall time T a fraction p is slowed, so the work done is
    # T (1 - p + p / factor) and wall time per unit of work is its inverse.
    base_s, phases = 15.0, 20_000
    t = 0.0
    for _ in range(phases):
        t += clock.compute_time_s(t, base_s)
    ratio = t / (phases * base_s)
    expected = 1.0 / (1 - p + p / factor)
    # Occupation time U(T) of an alternating renewal process: Var U / T ->
    # (mu_d^2 s_u^2 + mu_u^2 s_d^2) / (mu_u + mu_d)^3; exponential periods: s = mu.
    mu_u, mu_d = 1 / rate, duration
    sd_fraction = math.sqrt(2 * mu_u**2 * mu_d**2 / (mu_u + mu_d) ** 3 / t)
    sd_ratio = expected**2 * (1 - 1 / factor) * sd_fraction
    assert abs(ratio - expected) < 5 * sd_ratio

    # Short phases at instants far apart: each is stretched by `factor` with probability p
    # (the timeline starts stationary), so the mean stretch is 1 - p + p factor.
    probe = StragglerModel(transient=transient).clock(1, seed=4)
    n = 10_000
    stretch = np.array([probe.compute_time_s(40.0 * k, 1e-6) / 1e-6 for k in range(n)])
    mean_stretch = 1 - p + p * factor
    sd = (factor - 1) * math.sqrt(p * (1 - p) / n)
    assert abs(stretch.mean() - mean_stretch) < 5 * sd
    assert stretch.min() > 1 - 1e-3 and stretch.max() < factor + 1e-3


def test_failures_arrive_with_mean_interval_mtbf():
    clock = StragglerModel(failures=Failures(mtbf_s=12.0, restart_s=2.0)).clock(0, seed=8)
    assert clock.restart_s == 2.0
    instants, t = [], 0.0
    for _ in range(20_000):
        t = clock.next_failure_s(math.nextafter(t, math.inf))
        instants.append(t)
    gaps = np.diff([0.0] + instants)
    assert gaps.min() > 0.0
    assert abs(gaps.mean() - 12.0) < 5 * 12.0 / math.sqrt(len(gaps))
    assert clock.next_failure_s(instants[10]) == instants[10]
    assert StragglerModel().clock(0, seed=8).next_failure_s(3.0) == math.inf


def test_restart_from_scratch_matches_the_closed_form_completion_time():
    # A job of length b restarted from scratch after each Poisson failure (rate 1/M) with
    # a restart delay R takes on average (M + R) (exp(b / M) - 1).
    mtbf_s, restart_s, base_s = 2.0, 0.5, 1.0
    clock = StragglerModel(failures=Failures(mtbf_s, restart_s)).clock(0, seed=21)
    t, durations, failures = 0.0, [], 0
    for _ in range(10_000):
        phase = clock.run_compute(t, base_s)
        durations.append(phase.end_s - t)
        failures += phase.failures
        t = phase.end_s
    durations = np.array(durations)
    expected = (mtbf_s + restart_s) * math.expm1(base_s / mtbf_s)
    assert abs(durations.mean() - expected) < 5 * durations.std() / math.sqrt(len(durations))
    # Each attempt fails with probability 1 - exp(-b / M): a geometric number of failures.
    assert failures / len(durations) == pytest.approx(math.expm1(base_s / mtbf_s), rel=0.05)


def test_from_section_defaults_and_full_section():
    plain = StragglerModel.from_section({})
    assert plain == StragglerModel()
    model = StragglerModel.from_section({
        "noise": "lognormal", "sigma": 0.2, "alpha": 3.0, "slow_workers": 2, "slow_factor": 1.5,
        "transient_rate_per_s": 0.01, "transient_duration_s": 5, "transient_factor": 2.0,
        "failure_mtbf_s": 3600, "restart_s": 30,
    })
    assert model.noise == LogNormal(0.2)
    assert model.slow_workers == (0, 1) and model.slow_factor == 1.5
    assert model.transient == TransientSlowdown(0.01, 5.0, 2.0)
    assert model.failures == Failures(3600.0, 30.0)
    assert StragglerModel.from_section({"noise": "pareto", "alpha": 2.5}).noise == Pareto(2.5)
    assert StragglerModel.from_section({"noise": "exponential"}).noise == Exponential(1.0)


@pytest.mark.parametrize(("section", "field", "suggestion"), [
    ({"sigm": 0.1}, "stragglers.sigm", "sigma"),
    ({"failure_mtbf": 10.0}, "stragglers.failure_mtbf", "failure_mtbf_s"),
    ({"noise": "lognorml"}, "stragglers.noise", "lognormal"),
    ({"sigma": -0.1}, "stragglers.sigma", None),
    ({"alpha": 0.5, "noise": "none"}, "stragglers.alpha", None),
    ({"slow_workers": 1.5}, "stragglers.slow_workers", None),
    ({"slow_factor": True}, "stragglers.slow_factor", None),
    ({"transient_rate_per_s": 0.1}, "stragglers.transient_duration_s", None),
    ({"failure_mtbf_s": -5.0}, "stragglers.failure_mtbf_s", None),
    ({"restart_s": "30s"}, "stragglers.restart_s", None),
])
def test_from_section_rejects_bad_keys_and_values(section, field, suggestion):
    with pytest.raises(ConfigError) as info:
        StragglerModel.from_section(section)
    assert info.value.field == field
    assert info.value.suggestion == suggestion
