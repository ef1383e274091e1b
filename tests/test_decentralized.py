"""Local SGD, gossip and EASGD against closed forms; logs that replay; determinism."""

import math

import numpy as np
import pandas as pd
import pytest
from engine_cases import ScriptedFailures, costs, layer_table
from scipy import integrate, stats

from models import catalog, collectives
from models import emulation as em
from models.errors import ConfigError
from simulator.algorithms import easgd, gossip
from simulator.costs import Costs
from simulator.engine import simulate
from simulator.stragglers import Exponential, StragglerModel


def _round_ends(result):
    return result.update_log.loc[result.update_log["kind"] == "average", "time_s"].to_numpy()


def _replays(result, variant="symmetric"):
    workers = result.summary["workers"]
    trace = em.emulate(result.update_log, workers, 4, 0.3, 0, gossip=variant)
    assert len(trace) == len(result.update_log)
    assert np.isfinite(trace["test_loss"]).all()


# --------------------------------------------------------------------------------------
# local SGD


def test_local_sgd_with_one_local_step_is_allreduce_without_overlap():
    c = costs()
    local = simulate(c, "local-sgd", iterations=5, options={"local_steps": 1})
    # One bucket holding the whole model: the all-reduce local SGD runs on parameters.
    sync = simulate(c, "allreduce", iterations=5,
                    options={"overlap": False, "bucket_mb": 1e6})
    period = c.iteration_compute_s + collectives.allreduce_time_s(c.model_bytes, c.cluster)
    np.testing.assert_allclose(_round_ends(local), period * np.arange(1, 6), rtol=1e-12)
    for key in ("iteration_time_mean_s", "compute_s", "communication_s",
                "throughput_samples_per_s"):
        assert local.summary[key] == pytest.approx(sync.summary[key], rel=1e-12)
    np.testing.assert_allclose(local.iterations["end_s"], sync.iterations["end_s"],
                               rtol=1e-12)


@pytest.mark.parametrize("iterations, local_steps, rounds", [(12, 4, 3), (10, 4, 3),
                                                             (3, 8, 1)])
def test_local_sgd_round_is_h_steps_of_compute_plus_one_model_allreduce(
        iterations, local_steps, rounds):
    c = costs()
    result = simulate(c, "local-sgd", iterations=iterations,
                      options={"local_steps": local_steps})
    allreduce_s = c.allreduce_time_s(c.model_bytes)
    steps = [min(local_steps * (k + 1), iterations) for k in range(rounds)]
    expected = [s * c.iteration_compute_s + (k + 1) * allreduce_s for k, s in enumerate(steps)]
    np.testing.assert_allclose(_round_ends(result), expected, rtol=1e-12)
    assert result.summary["simulated_time_s"] == pytest.approx(expected[-1], rel=1e-12)
    assert result.summary["communication_s"] == pytest.approx(
        rounds * allreduce_s / iterations, rel=1e-9)
    log = result.update_log
    assert (log["kind"] == "local").sum() == iterations * c.workers
    assert list(log.loc[log["kind"] == "average", "step"]) == steps
    assert result.staleness.empty and result.summary["staleness_mean"] is None
    assert result.summary["samples_processed"] == iterations * c.workers * c.batch_per_gpu
    _replays(result)


def test_local_sgd_barrier_is_the_max_over_workers_of_a_round_of_exponential_steps():
    # Noise on forward+backward (mean m), so a worker's round of H steps is Gamma(H, m)
    # plus the nominal updates; the average waits for the largest of N of them.
    c = costs(nodes=2, gpus_per_node=8)
    h, rounds, workers = 4, 300, c.workers
    result = simulate(c, "local-sgd", iterations=h * rounds, options={"local_steps": h},
                      stragglers=StragglerModel(noise=Exponential(1.0)), seed=2)
    m = c.gradient_compute_s
    law = stats.gamma(h, scale=m)
    expected_max = integrate.quad(lambda x: -math.expm1(workers * law.logcdf(x)),
                                  0, math.inf)[0]
    period = expected_max + h * c.update_total_s + c.allreduce_time_s(c.model_bytes)
    assert np.diff(_round_ends(result), prepend=0.0).mean() == pytest.approx(period,
                                                                          rel=0.03)
    # Averaging every step would wait for the largest of N per step instead.
    per_step_max = m * sum(1.0 / k for k in range(1, workers + 1))
    assert expected_max < 0.8 * h * per_step_max


def test_local_sgd_average_waits_for_a_failed_worker():
    c = costs()
    period = 4 * c.iteration_compute_s + c.allreduce_time_s(c.model_bytes)
    restart_s = 0.5
    # Worker 5 fails 10 ms into the first step of round 2.
    failed = simulate(c, "local-sgd", iterations=12, options={"local_steps": 4},
                      stragglers=ScriptedFailures(5, 2 * period + 0.01, restart_s))
    assert failed.summary["simulated_time_s"] == pytest.approx(3 * period + restart_s + 0.01)
    row = failed.iterations.query("iteration == 11 and worker == 0").iloc[0]
    assert row["waiting_s"] == pytest.approx(restart_s + 0.01)


# --------------------------------------------------------------------------------------
# gossip


@pytest.mark.parametrize("variant", ["push", "pull"])
@pytest.mark.parametrize("nodes, gpus_per_node", [(1, 2), (2, 1)])
def test_gossip_pair_iteration_is_compute_plus_pair_exchange(variant, nodes, gpus_per_node):
    c = costs(nodes, gpus_per_node)
    result = simulate(c, "gossip", iterations=6, options={"variant": variant})
    exchange_s = collectives.gossip_exchange_time_s(c.model_bytes, c.cluster)
    link = c.cluster.intra_link if nodes == 1 else c.cluster.inter_link
    # A pull first sends its request: one more latency.
    request_s = link.latency_s if variant == "pull" else 0.0
    frame = result.iterations
    np.testing.assert_allclose(frame["end_s"] - frame["start_s"],
                               c.iteration_compute_s + exchange_s + request_s, rtol=1e-9)
    np.testing.assert_allclose(frame["communication_s"], exchange_s + request_s, rtol=1e-9)
    gossips = result.update_log[result.update_log["kind"] == "gossip"]
    assert (gossips["peer"] == 1 - gossips["worker"]).all()


def test_gossip_peers_are_uniform_over_the_others():
    draws = gossip.PeerDraws(seed=11, worker=3, workers=8)
    peers = np.array([draws.next() for _ in range(14000)])
    assert not (peers == 3).any()
    counts = np.bincount(peers, minlength=8)
    others = np.delete(counts, 3)
    assert stats.chisquare(others).pvalue > 1e-3
    # Drawn over a large cluster too: uniform, never itself.
    big = gossip.PeerDraws(seed=0, worker=0, workers=1000)
    peers = np.array([big.next() for _ in range(20000)])
    assert peers.min() >= 1 and peers.max() <= 999
    assert stats.chisquare(np.bincount(peers // 100, minlength=10)[:10],
                           f_exp=np.array([99] + [100] * 9) * 20000 / 999).pvalue > 1e-3


def test_gossip_peer_draws_survive_a_new_worker():
    keys = stats.randint(0, 2**62).rvs(size=4000, random_state=5).astype(np.int64)
    for workers in (2, 8, 33):
        for worker in (0, workers - 1):
            before = np.array([gossip.choose_peer(int(k), worker, workers) for k in keys])
            after = np.array([gossip.choose_peer(int(k), worker, workers + 1) for k in keys])
            moved = before != after
            assert (after[moved] == workers).all()
            # A draw moves to the new worker with probability 1 / workers.
            assert moved.mean() == pytest.approx(1 / workers, abs=4 * math.sqrt(
                (1 / workers) * (1 - 1 / workers) / len(keys)))


@pytest.mark.parametrize("variant", ["push", "pull"])
def test_gossip_across_nodes_splits_the_nic_between_a_nodes_gpus(monkeypatch, variant):
    # Every GPU exchanges with its counterpart on the other node, all at once: the g
    # flows of a node share its NICs, node_bw / g each, the case
    # models.collectives.gossip_exchange_time_s describes.
    monkeypatch.setattr(gossip, "choose_peer", lambda key, worker, workers:
                        (worker + workers // 2) % workers)
    latency_s = costs(2, 1).cluster.inter_link.latency_s
    request_s = latency_s if variant == "pull" else 0.0
    transfer_s = {}
    for g in (2, 4):
        c = costs(2, g)
        result = simulate(c, "gossip", iterations=4, options={"variant": variant})
        exchange_s = collectives.gossip_exchange_time_s(c.model_bytes, c.cluster)
        np.testing.assert_allclose(result.iterations["communication_s"],
                                   exchange_s + request_s, rtol=1e-9)
        transfer_s[g] = exchange_s - latency_s
        assert transfer_s[g] == pytest.approx(g * c.model_bytes / c.cluster.node_bandwidth_Bps)
    assert transfer_s[4] == pytest.approx(2 * transfer_s[2])


@pytest.mark.parametrize("g", [3, 5])
def test_gossip_pushes_to_one_target_share_its_link(monkeypatch, g):
    # Everyone pushes to worker 0 (which pushes to 1): the g - 1 flows into GPU 0 share
    # its link, so each exchange takes latency + (g - 1) n / bandwidth.
    monkeypatch.setattr(gossip, "choose_peer", lambda key, worker, workers:
                        1 if worker == 0 else 0)
    c = costs(1, g)
    result = simulate(c, "gossip", iterations=5)
    link = c.cluster.intra_link
    frame = result.iterations
    senders = frame[frame["worker"] > 0]
    np.testing.assert_allclose(
        senders["communication_s"],
        link.latency_s + (g - 1) * c.model_bytes / link.achievable_bandwidth_Bps, rtol=1e-9)
    alone = frame[frame["worker"] == 0]
    np.testing.assert_allclose(
        alone["communication_s"],
        collectives.gossip_exchange_time_s(c.model_bytes, c.cluster), rtol=1e-9)


def test_gossip_more_gpus_per_node_mean_slower_exchanges():
    # Exchanges longer than a step keep the NICs busy: more GPUs per node, each gets less.
    communication = [simulate(costs(4, g, forward_s=1e-4, backward_s=2e-4, update_s=1e-5),
                              "gossip", iterations=10).summary["communication_s"]
                     for g in (1, 2, 4)]
    assert communication[0] < communication[1] < communication[2]


@pytest.mark.parametrize("variant", ["push", "pull"])
def test_gossip_log_replays_with_local_and_gossip_rows(variant):
    c = costs(2, 4)
    result = simulate(c, "gossip", iterations=8, options={"variant": variant}, seed=3)
    log = result.update_log
    assert set(log["kind"]) == {"local", "gossip"}
    assert (log["kind"] == "local").sum() == 8 * c.workers
    gossips = log[log["kind"] == "gossip"]
    assert (gossips["peer"] != gossips["worker"]).all()
    assert np.all(np.diff(log["time_s"]) >= 0)
    assert result.summary["staleness_mean"] is None
    _replays(result, variant)


def test_gossip_is_deterministic_and_a_new_worker_keeps_the_others_draws():
    c = costs(1, 4)
    a = simulate(c, "gossip", iterations=20, options={"variant": "pull"}, seed=9)
    b = simulate(c, "gossip", iterations=20, options={"variant": "pull"}, seed=9)
    pd.testing.assert_frame_equal(a.update_log, b.update_log)
    pd.testing.assert_frame_equal(a.iterations, b.iterations)
    assert a.summary == b.summary
    other = simulate(c, "gossip", iterations=20, options={"variant": "pull"}, seed=10)
    assert not a.update_log.equals(other.update_log)

    def peers(result):
        rows = result.update_log[result.update_log["kind"] == "gossip"]
        return {(w, s): p for w, s, p in zip(rows["worker"], rows["step"], rows["peer"],
                                             strict=True)}

    small = peers(a)
    large = peers(simulate(costs(1, 5), "gossip", iterations=20, options={"variant": "pull"},
                           seed=9))
    shared = small.keys() & large.keys()
    assert len(shared) > 60
    assert all(large[k] == small[k] or large[k] == 4 for k in shared)
    assert sum(large[k] == 4 for k in shared) < len(shared) / 2


def test_gossip_carries_on_without_a_failed_worker():
    c = costs(1, 4)
    base = simulate(c, "gossip", iterations=20, options={"variant": "pull"})
    period = base.summary["iteration_time_mean_s"]
    restart_s = 10 * period
    failed = simulate(c, "gossip", iterations=20, options={"variant": "pull"},
                      stragglers=ScriptedFailures(1, 3 * period + 0.01, restart_s))
    assert failed.summary["failures"] == 1
    # The others go on taking steps: the run loses about a quarter of the restart.
    stall = failed.summary["simulated_time_s"] - base.summary["simulated_time_s"]
    assert 0 < stall < 0.4 * restart_s
    log = failed.update_log
    down_from, down_to = 3 * period + 0.01, 3 * period + 0.01 + restart_s
    during = log[(log["time_s"] > down_from) & (log["time_s"] < down_to)]
    assert not ((during["worker"] == 1) | (during["peer"] == 1)).any()
    assert (during["kind"] == "local").sum() > 20
    _replays(failed, "pull")


# --------------------------------------------------------------------------------------
# EASGD


def _with_network(nodes, gpus_per_node):
    # A network link even on one node, so dedicated servers have somewhere to sit.
    cluster = catalog.cluster("v100-sxm2", nodes, gpus_per_node, "nvlink2", "ib-ndr")
    return Costs.from_layer_times(layer_table(), cluster, batch_per_gpu=32)


def _durations(result):
    frame = result.iterations
    return (frame["end_s"] - frame["start_s"]).to_numpy()


@pytest.mark.parametrize("servers, placement", [(1, "colocated"), (1, "dedicated"),
                                                (2, "dedicated")])
def test_easgd_one_worker_is_ps_async_plus_the_workers_own_update(servers, placement):
    # Same pull, push and server apply as ps-async; the gradient is also applied on the
    # worker (its local step), and the servers apply the elastic difference instead.
    c = _with_network(1, 1)
    options = {"servers": servers, "server_placement": placement}
    easgd = simulate(c, "easgd", iterations=5, options=options)
    ps = simulate(c, "ps-async", iterations=5, options=options)
    np.testing.assert_allclose(_durations(easgd), _durations(ps) + c.update_total_s,
                               rtol=1e-12)
    if placement == "dedicated":
        exchange_s = (collectives.ps_pull_time_s(c.model_bytes, c.cluster, servers,
                                                 dedicated_servers=True)
                      + collectives.ps_push_time_s(c.model_bytes, c.cluster, servers,
                                                   dedicated_servers=True))
        np.testing.assert_allclose(
            _durations(easgd),
            c.iteration_compute_s + exchange_s + c.update_total_s / servers, rtol=1e-12)
    assert list(easgd.staleness) == [0] * 5


def test_easgd_exchanges_every_tau_steps():
    c = _with_network(1, 1)
    options = {"server_placement": "dedicated", "tau": 3}
    result = simulate(c, "easgd", iterations=7, options=options)
    exchange_s = (2 * collectives.ps_pull_time_s(c.model_bytes, c.cluster, 1,
                                                 dedicated_servers=True)
                  + c.update_total_s)
    # Steps 3 and 6 close an exchange; the 7th step ends the run.
    expected = c.iteration_compute_s + np.array([0, 0, exchange_s] * 2 + [0])
    np.testing.assert_allclose(_durations(result), expected, rtol=1e-12)
    log = result.update_log
    assert list(log.loc[log["kind"] == "elastic", "step"]) == [2, 5]
    assert result.summary["simulated_time_s"] == pytest.approx(
        7 * c.iteration_compute_s + 2 * exchange_s, rel=1e-12)


def test_easgd_exchanges_contend_at_the_server_nic_and_queue():
    # Four workers, one per node, exchange at the same instant with one dedicated server:
    # pull and push share its NIC (the W-worker closed form of models.collectives), then
    # the server applies the four differences one after another.
    c = costs(4, 1)
    result = simulate(c, "easgd", iterations=3, options={"server_placement": "dedicated"})
    first = result.iterations[result.iterations["iteration"] == 0]
    pull_s = collectives.ps_pull_time_s(c.model_bytes, c.cluster, 1, dedicated_servers=True)
    push_s = collectives.ps_push_time_s(c.model_bytes, c.cluster, 1, dedicated_servers=True)
    assert pull_s > 3.9 * c.model_bytes / c.cluster.node_bandwidth_Bps
    np.testing.assert_allclose(first["communication_s"], pull_s + push_s, rtol=1e-9)
    np.testing.assert_allclose(first["waiting_s"], c.update_total_s * np.arange(1, 5),
                               rtol=1e-9)
    # All read version 0 and land on versions 0..3.
    assert list(result.staleness.iloc[:4]) == [0, 1, 2, 3]
    assert result.summary["staleness_mean"] is not None


def test_easgd_log_replays_with_local_and_elastic_rows():
    c = costs(2, 4)
    options = {"servers": 2, "tau": 2}
    result = simulate(c, "easgd", iterations=6, options=options,
                      stragglers=StragglerModel(noise=Exponential(1.0)), seed=4)
    log = result.update_log
    assert set(log["kind"]) == {"local", "elastic"}
    assert (log["kind"] == "local").sum() == 6 * c.workers
    elastic = log[log["kind"] == "elastic"]
    assert len(result.staleness) == len(elastic)
    # Version k lands as the k-th elastic row; a read is never from the future.
    assert (elastic["read_version"].to_numpy() <= np.arange(len(elastic))).all()
    assert np.all(np.diff(log["time_s"]) >= 0)
    alpha = easgd.elastic_alpha(0.9, c.workers)
    assert alpha == pytest.approx(0.9 / 8)
    trace = em.emulate(log, c.workers, 4, 0.3, 0, alpha=alpha)
    assert len(trace) == len(log) and np.isfinite(trace["test_loss"]).all()
    again = simulate(c, "easgd", iterations=6, options=options,
                     stragglers=StragglerModel(noise=Exponential(1.0)), seed=4)
    pd.testing.assert_frame_equal(result.update_log, again.update_log)
    pd.testing.assert_frame_equal(result.iterations, again.iterations)


def test_easgd_carries_on_without_a_failed_worker():
    c = costs(1, 4)
    base = simulate(c, "easgd", iterations=20)
    period = base.summary["iteration_time_mean_s"]
    restart_s = 10 * period
    failed = simulate(c, "easgd", iterations=20,
                      stragglers=ScriptedFailures(2, 3 * period + 0.01, restart_s))
    stall = failed.summary["simulated_time_s"] - base.summary["simulated_time_s"]
    assert failed.summary["failures"] == 1 and 0 < stall < 0.4 * restart_s
    log = failed.update_log
    during = log[(log["time_s"] > 3 * period + 0.01)
                 & (log["time_s"] < 3 * period + 0.01 + restart_s)]
    assert not (during["worker"] == 2).any() and (during["kind"] == "elastic").sum() > 20


# --------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize("algorithm, options, field", [
    ("local-sgd", {"local_steps": 0}, "algorithm.local_steps"),
    ("local-sgd", {"local_steps": 2.5}, "algorithm.local_steps"),
    ("local-sgd", {"period": 4}, "algorithm.period"),
    ("gossip", {"variant": "broadcast"}, "algorithm.variant"),
    ("gossip", {"variant": 1}, "algorithm.variant"),
    ("easgd", {"tau": 0}, "algorithm.tau"),
    ("easgd", {"moving_rate": 0.0}, "algorithm.moving_rate"),
    ("easgd", {"moving_rate": 1.5}, "algorithm.moving_rate"),
    ("easgd", {"servers": 0}, "algorithm.servers"),
    ("easgd", {"servers": 9}, "algorithm.servers"),
    ("easgd", {"server_placement": "remote"}, "algorithm.server_placement"),
    ("easgd", {"alpha": 0.1}, "algorithm.alpha"),
])
def test_bad_options_name_the_field(algorithm, options, field):
    with pytest.raises(ConfigError) as error:
        simulate(costs(), algorithm, iterations=1, options=options)
    assert error.value.field == field


def test_a_lone_gossip_worker_trains_alone():
    c = costs(1, 1)
    result = simulate(c, "gossip", iterations=3)
    assert set(result.update_log["kind"]) == {"local"}
    assert result.summary["scaling_efficiency"] == pytest.approx(1.0)
