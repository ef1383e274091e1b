import numpy as np
import pandas as pd
import pytest

from models import emulation as em
from models.errors import ConfigError
from models.random_streams import stream

LR, TARGET, BATCH = 0.3, 0.65, 8


def plain_sgd(steps, batch, lr, seed, problem):
    """Minibatch SGD written out, independent of the log replay."""
    weights = em.initial_model(problem)
    rng = stream(seed, "emulation.worker-0")
    accuracy = []
    for _ in range(steps):
        indices = rng.integers(0, problem.train_samples, size=batch)
        weights = weights - lr * em.gradient(problem, weights, indices)
        accuracy.append(em.evaluate(problem, weights)[0])
    return weights, accuracy


def test_gradient_matches_finite_differences():
    problem = em.Problem(classes=3, features=4, train_samples=50)
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(5, 3))
    indices = np.arange(20)
    data = em._data(problem)

    def loss(w):
        logits = data.train_x[indices] @ w
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return (-log_p[np.arange(20), data.train_y[indices]].mean()
                + 0.5 * problem.weight_decay * np.sum(w * w))

    numeric = np.zeros_like(weights)
    for index in np.ndindex(weights.shape):
        step = np.zeros_like(weights)
        step[index] = 1e-6
        numeric[index] = (loss(weights + step) - loss(weights - step)) / 2e-6
    assert np.allclose(em.gradient(problem, weights, indices), numeric, atol=1e-8)


def test_fresh_async_with_one_worker_is_plain_sgd_bit_for_bit():
    problem = em.Problem()
    _, accuracy = plain_sgd(60, BATCH, LR, 3, problem)
    pushed = em.emulate(em.push_log(60, 1), 1, BATCH, LR, 3)
    synced = em.emulate(em.synchronous_log(60), 1, BATCH, LR, 3)
    assert pushed["test_accuracy"].tolist() == accuracy
    assert synced["test_accuracy"].tolist() == accuracy
    assert np.array_equal(pushed["test_loss"], synced["test_loss"])


def test_more_staleness_never_needs_fewer_updates_on_the_convex_problem():
    seeds = range(3)
    means = [np.mean([em.updates_to_target(em.push_log(1200, 1, staleness), 1, BATCH, LR,
                                           seed, TARGET) for seed in seeds])
             for staleness in (0, 4, 16)]
    assert np.all(np.isfinite(means))
    assert means[0] <= means[1] <= means[2]
    assert means[2] > 1.2 * means[0]


def test_easgd_with_zero_alpha_leaves_the_center_unchanged():
    log = pd.DataFrame({"time_s": [0.0, 1.0, 2.0, 3.0], "worker": [0, 1, 0, 1],
                        "kind": ["local", "local", "elastic", "elastic"],
                        "read_version": -1, "peer": -1, "step": [0, 0, 1, 1]})
    frozen = em.emulate(log, 2, BATCH, LR, 0, alpha=0.0)
    start = em.evaluate(em.Problem(), em.initial_model(em.Problem()))
    assert frozen["test_accuracy"].iloc[-1] == start[0]
    assert frozen["test_loss"].iloc[-1] == start[1]
    moved = em.emulate(log, 2, BATCH, LR, 0, alpha=0.5)
    assert moved["test_loss"].iloc[-1] < start[1]


def _gossip_log():
    rows = [(float(i), i % 4, "local", -1, -1, i // 4) for i in range(8)]
    rows.append((8.0, 0, "gossip", -1, 2, 2))
    return pd.DataFrame(rows, columns=list(em.LOG_COLUMNS))


def test_symmetric_gossip_preserves_the_mean_of_the_models():
    # The judged model of a local/gossip log is the mean of the worker models.
    log = _gossip_log()
    trace = em.emulate(log, 4, BATCH, LR, 5, gossip="symmetric")
    assert trace["test_loss"].iloc[-1] == pytest.approx(trace["test_loss"].iloc[-2], abs=1e-12)
    pulled = em.emulate(log, 4, BATCH, LR, 5, gossip="pull")
    assert abs(pulled["test_loss"].iloc[-1] - pulled["test_loss"].iloc[-2]) > 1e-6


def test_staleness_factor_is_one_for_sync_and_grows_with_async_staleness():
    seeds = (0, 1)
    assert em.staleness_factor(em.synchronous_log(300), 4, BATCH, LR, seeds, TARGET) == 1.0
    assert em.staleness_factor(em.push_log(600, 1), 1, BATCH, LR, seeds, TARGET) == 1.0
    assert em.staleness_factor(em.push_log(1500, 8), 8, BATCH, LR, seeds, TARGET) > 1.2


def test_push_log_staleness_is_workers_minus_one_after_the_first_round():
    log = em.push_log(20, 4)
    assert (np.arange(20) - log["read_version"])[4:].eq(3).all()
    assert log["worker"].tolist()[:5] == [0, 1, 2, 3, 0]


@pytest.mark.parametrize("change, message", [
    ({"kind": "pushh"}, "did you mean 'push'"),
    ({"worker": 7}, "worker"),
    ({"read_version": 5}, "read_version"),
])
def test_bad_logs_are_refused_with_the_row(change, message):
    log = em.push_log(3, 2)
    for column, value in change.items():
        log.loc[1, column] = value
    with pytest.raises(ConfigError, match=message):
        em.emulate(log, 2, BATCH, LR, 0)


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="gossip"):
        em.emulate(_gossip_log(), 4, BATCH, LR, 0, gossip="ring")
    with pytest.raises(ConfigError, match="missing"):
        em.emulate(em.push_log(3, 1).drop(columns="peer"), 1, BATCH, LR, 0)
    with pytest.raises(ConfigError, match="alpha"):
        em.emulate(em.push_log(3, 1), 1, BATCH, LR, 0, alpha=1.5)
    bad_peer = _gossip_log()
    bad_peer.loc[8, "peer"] = 0
    with pytest.raises(ConfigError, match="peer"):
        em.emulate(bad_peer, 4, BATCH, LR, 0)
