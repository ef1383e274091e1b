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


def row_by_row(update_log, workers, batch_per_worker, lr, seed, problem=None,
               target_accuracy=None, alpha=0.1, gossip="symmetric", target_loss=None,
               evaluate_every=1):
    """The replay written out one row at a time, one ``integers`` call per minibatch:
    the definition the batched replay must agree with."""
    problem = em.Problem() if problem is None else problem
    rngs = [stream(seed, f"emulation.worker-{w}") for w in range(workers)]
    center = em.initial_model(problem)
    history = [center]
    local = [center.copy() for _ in range(workers)]
    judge_center = bool(set(update_log["kind"]) & {"sync", "push", "elastic"})

    def batch(w):
        return rngs[w].integers(0, problem.train_samples, size=batch_per_worker)

    results = []
    columns = zip(update_log["time_s"], update_log["worker"], update_log["kind"],
                  update_log["read_version"], update_log["peer"], strict=True)
    for row, (time_s, w, kind, read_version, peer) in enumerate(columns):
        if kind == "sync":
            total = sum(em.gradient(problem, center, batch(v)) for v in range(workers))
            center = center - lr * (total / workers)
            history.append(center)
        elif kind == "push":
            center = center - lr * em.gradient(problem, history[read_version], batch(w))
            history.append(center)
        elif kind == "local":
            local[w] = local[w] - lr * em.gradient(problem, local[w], batch(w))
        elif kind == "elastic":
            difference = alpha * (local[w] - center)
            local[w] = local[w] - difference
            center = center + difference
            history.append(center)
        elif kind == "gossip":
            mean = 0.5 * (local[w] + local[peer])
            if gossip in ("symmetric", "pull"):
                local[w] = mean
            if gossip in ("symmetric", "push"):
                local[peer] = mean.copy()
        else:
            mean = sum(local) / workers
            local = [mean.copy() for _ in range(workers)]
        if (row + 1) % evaluate_every and row + 1 < len(update_log):
            continue
        judged = center if judge_center else sum(local) / workers
        if not np.isfinite(judged).all():
            break
        accuracy, loss = em.evaluate(problem, judged)
        results.append((row + 1, float(time_s), kind, accuracy, loss))
        if target_accuracy is not None and accuracy >= target_accuracy:
            break
        if target_loss is not None and loss <= target_loss:
            break
    return pd.DataFrame(results, columns=["update", "time_s", "kind", "test_accuracy",
                                          "test_loss"])


def random_log(rng, rows, workers, kinds, weights):
    """A log of ``kinds`` drawn with ``weights``; push rows read any version so far."""
    versions = 0
    records = []
    for row in range(rows):
        kind = kinds[rng.choice(len(kinds), p=weights)]
        worker = int(rng.integers(workers))
        peer = -1
        read_version = -1
        if kind == "gossip":
            peer = int((worker + 1 + rng.integers(workers - 1)) % workers)
        if kind == "push":
            read_version = int(rng.integers(max(0, versions - 5), versions + 1))
        if kind in ("sync", "push", "elastic"):
            versions += 1
        records.append((0.5 * row, worker, kind, read_version, peer, row))
    return pd.DataFrame(records, columns=list(em.LOG_COLUMNS))


MIXES = {
    "local-average": (("local", "average"), (0.9, 0.1)),
    "local-gossip": (("local", "gossip"), (0.6, 0.4)),
    "easgd": (("local", "elastic"), (0.7, 0.3)),
    "all-kinds": (em.KINDS, (0.05, 0.2, 0.45, 0.1, 0.15, 0.05)),
    "push-sync": (("push", "sync"), (0.8, 0.2)),
}


@pytest.mark.parametrize("mix, gossip", [(mix, "symmetric") for mix in sorted(MIXES)] + [
    (mix, variant) for mix in ("all-kinds", "local-gossip") for variant in ("pull", "push")])
def test_batched_replay_is_the_row_by_row_replay(mix, gossip):
    problem = em.Problem(train_samples=300, test_samples=200)
    kinds, weights = MIXES[mix]
    rng = np.random.default_rng(len(mix) + 7 * em.GOSSIP_VARIANTS.index(gossip))
    for workers, every in ((5, 1), (16, 3)):
        log = random_log(rng, 120, workers, kinds, weights)
        options = dict(problem=problem, alpha=0.3, gossip=gossip, evaluate_every=every)
        expected = row_by_row(log, workers, 4, 0.5, 3, **options)
        got = em.emulate(log, workers, 4, 0.5, 3, **options)
        assert got[["update", "time_s", "kind"]].equals(expected[["update", "time_s", "kind"]])
        assert np.allclose(got["test_loss"], expected["test_loss"], rtol=1e-12, atol=0)
        # Accuracy counts argmaxes, which rounding could flip only at an exact tie.
        assert np.abs(got["test_accuracy"] - expected["test_accuracy"]).max() <= 1e-2


def test_batched_replay_stops_where_the_row_by_row_replay_does():
    log = em.local_sgd_log(16, 40, 4)
    expected = row_by_row(log, 16, BATCH, LR, 2, target_loss=1.3, evaluate_every=16)
    got = em.emulate(log, 16, BATCH, LR, 2, target_loss=1.3, evaluate_every=16)
    assert len(got) == len(expected) < 40 * 4
    assert np.allclose(got["test_loss"], expected["test_loss"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("samples", [2000, 3, 1, 2**31 + 1, 2**32 - 1, 2**32])
def test_bulk_minibatches_are_the_generators_own_draws(samples):
    # 2**31 + 1 rejects about half of the 32-bit draws, so the replay of rejections runs.
    draws = em._Minibatches(4, 3, samples, 5)
    generators = [stream(4, f"emulation.worker-{w}") for w in range(3)]
    order = np.random.default_rng(0)
    for _ in range(40):
        workers = order.permutation(3)[:order.integers(1, 4)]
        expected = np.stack([generators[w].integers(0, samples, size=5) for w in workers])
        assert np.array_equal(draws.take(workers), expected)


def test_bulk_minibatch_draws_equal_the_plain_integers_path(monkeypatch):
    # A numpy whose bounded-integer rule changed gets the plain path: same draws.
    log = em.local_sgd_log(4, 5, 3)
    bulk = em.emulate(log, 4, 8, 0.1, seed=3)
    monkeypatch.setattr(em, "_bulk_matches_integers", lambda samples, batch: False)
    plain = em.emulate(log, 4, 8, 0.1, seed=3)
    pd.testing.assert_frame_equal(bulk, plain)
