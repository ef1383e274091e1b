"""Parameter servers: closed forms of the flow-level costs, queueing, staleness, faults."""

import numpy as np
import pandas as pd
import pytest
from engine_cases import ScriptedFailures, costs, ideal_link, layer_table

from models import catalog
from models.errors import ConfigError
from models.hardware import ClusterSpec
from simulator.costs import Costs
from simulator.engine import simulate
from simulator.stragglers import Exponential, Failures, LogNormal, StragglerModel


def _one_gpu_costs() -> Costs:
    cluster = catalog.cluster("v100-sxm2", 1, 1, "nvlink2", "ib-ndr")
    return Costs.from_layer_times(layer_table(), cluster, batch_per_gpu=32)


def test_async_with_one_worker_is_synchronous_sgd():
    c = _one_gpu_costs()
    options = {"server_placement": "dedicated"}
    model = StragglerModel(noise=LogNormal(0.2))
    sync = simulate(c, "ps-sync", iterations=6, options=options, stragglers=model, seed=2)
    async_ = simulate(c, "ps-async", iterations=6, options=options, stragglers=model, seed=2)
    pd.testing.assert_frame_equal(sync.iterations, async_.iterations, rtol=1e-12)
    np.testing.assert_allclose(sync.update_log["time_s"], async_.update_log["time_s"],
                               rtol=1e-12)
    assert list(async_.update_log["read_version"]) == list(range(6))
    assert (async_.staleness == 0).all()
    assert sync.summary["throughput_samples_per_s"] == pytest.approx(
        async_.summary["throughput_samples_per_s"])
    # Pull, compute, push, apply: nothing overlaps with one worker.
    n = c.model_bytes
    push_s = c.ps_push_time_s(n, 1, True)
    period = c.gradient_compute_s + 2 * push_s + c.update_total_s
    assert sync.summary["iteration_time_p50_s"] == pytest.approx(
        period, rel=0.3)  # noise on compute
    nominal = simulate(c, "ps-async", iterations=3, options=options)
    np.testing.assert_allclose(nominal.update_log["time_s"],
                               period * np.arange(1, 4), rtol=1e-12)


@pytest.mark.parametrize("servers", [1, 2])
def test_flow_level_sync_ps_matches_the_closed_form(servers):
    # No competition beyond the step's own pushes: every worker pushes at the same
    # instant, the flow-level network must give the closed form of models.collectives.
    c = costs(nodes=2, gpus_per_node=4)
    result = simulate(c, "ps-sync", iterations=3,
                      options={"servers": servers, "server_placement": "dedicated"})
    n = c.model_bytes
    push_s = c.ps_push_time_s(n, servers, True)
    pull_s = c.ps_pull_time_s(n, servers, True)
    period = pull_s + c.gradient_compute_s + push_s + c.update_total_s / servers
    ends = result.update_log["time_s"].to_numpy()
    np.testing.assert_allclose(ends, period * np.arange(1, 4), rtol=1e-9)
    assert result.summary["communication_s"] == pytest.approx(push_s + pull_s, rel=1e-9)


def test_colocated_server_in_one_node_matches_the_closed_form():
    c = costs(nodes=1, gpus_per_node=4)
    result = simulate(c, "ps-sync", iterations=2)
    n = c.model_bytes
    # The server's GPU link receives the three other workers' gradients.
    push_s = c.ps_push_time_s(n, 1, False)
    assert push_s == pytest.approx(c.cluster.intra_link.latency_s
                                   + 3 * n / c.cluster.intra_link.achievable_bandwidth_Bps)
    period = 2 * push_s + c.gradient_compute_s + c.update_total_s
    np.testing.assert_allclose(result.update_log["time_s"], period * np.arange(1, 3),
                               rtol=1e-9)


@pytest.mark.parametrize("servers", [1, 2, 4])
def test_node_aggregation_matches_the_closed_form(servers):
    # Each node's host pulls the model once and pushes one summed gradient; a server's
    # NIC takes the nodes' shards, a node's NIC its whole model; a copy between the
    # host and its GPUs crosses each GPU's own link once per direction.
    c = costs(nodes=2, gpus_per_node=4)
    result = simulate(c, "ps-sync", iterations=3,
                      options={"servers": servers, "server_placement": "dedicated",
                               "aggregation": "node"})
    n, nodes = c.model_bytes, c.cluster.nodes
    nic_Bps = c.cluster.node_bandwidth_Bps
    wire_s = c.cluster.inter_link.latency_s + max(nodes / servers, 1.0) * n / nic_Bps
    intra = c.cluster.intra_link
    copy_s = intra.latency_s + n / intra.achievable_bandwidth_Bps
    period = (wire_s + copy_s) + c.gradient_compute_s + (copy_s + wire_s) \
        + c.update_total_s / servers
    np.testing.assert_allclose(result.update_log["time_s"], period * np.arange(1, 4),
                               rtol=1e-9)
    assert result.summary["communication_s"] == pytest.approx(2 * (wire_s + copy_s),
                                                              rel=1e-9)
    # Every GPU's gradient counts: samples are the whole cluster's.
    assert result.summary["throughput_samples_per_s"] == pytest.approx(
        c.workers * c.batch_per_gpu / period, rel=1e-9)


def test_node_aggregation_relieves_the_server_nic():
    # Eight GPUs per node: per-GPU pushes put 8x the bytes on the server's NIC.
    c = costs(nodes=4, gpus_per_node=8, gradient_bytes=50 * 2**20)
    options = {"server_placement": "dedicated", "servers": 2}
    per_gpu = simulate(c, "ps-sync", iterations=3, options=options)
    per_node = simulate(c, "ps-sync", iterations=3, options={**options, "aggregation": "node"})
    assert per_gpu.summary["communication_s"] > 4 * per_node.summary["communication_s"]


def test_node_aggregation_waits_for_the_slowest_gpu_of_each_node():
    c = costs(nodes=2, gpus_per_node=4)
    model = StragglerModel(noise=LogNormal(0.3))
    result = simulate(c, "ps-sync", iterations=4, stragglers=model, seed=3,
                      options={"aggregation": "node", "servers": 2})
    frame = result.iterations
    # Within a node every GPU ends the step together; the faster ones wait.
    ends = frame.groupby(["iteration", frame["worker"] // 4])["end_s"].nunique()
    assert (ends == 1).all()
    assert (frame["waiting_s"] >= -1e-12).all()
    assert (frame.groupby("iteration")["waiting_s"].max() > 0).all()


def test_one_server_nic_is_a_bottleneck_that_more_servers_relieve():
    c = costs(nodes=4, gpus_per_node=8, gradient_bytes=50 * 2**20)
    one = simulate(c, "ps-async", iterations=3, options={"server_placement": "dedicated"})
    four = simulate(c, "ps-async", iterations=3,
                    options={"server_placement": "dedicated", "servers": 4})
    assert one.summary["communication_s"] > 2 * four.summary["communication_s"]


def test_server_under_poisson_pushes_is_an_md1_queue():
    # 40 workers with exponential compute push to one server whose apply takes D: nearly
    # Poisson arrivals into a FIFO deterministic server. Zero-byte gradients keep the
    # network out of it.
    workers, mean_s, apply_s = 40, 1.0, 0.0125
    link = ideal_link()
    cluster = ClusterSpec(gpu=catalog.gpu("v100-sxm2"), nodes=1, gpus_per_node=workers,
                          intra_link=link)
    table = layer_table(layers=1, forward_s=mean_s / 3, backward_s=2 * mean_s / 3,
                        update_s=apply_s, gradient_bytes=0.0)
    c = Costs.from_layer_times(table, cluster, batch_per_gpu=1)
    result = simulate(c, "ps-async", iterations=250,
                      stragglers=StragglerModel(noise=Exponential(1.0)), seed=11)
    log = result.update_log
    arrival_rate = len(log) / log["time_s"].iloc[-1]
    rho = arrival_rate * apply_s
    assert 0.3 < rho < 0.6
    # Pollaczek-Khinchine for M/D/1: Wq = rho D / (2 (1 - rho)), half the M/M/1 wait.
    # waiting_s is the sojourn at the server, Wq + D. A finite population arrives a
    # little less often while the queue is long, so the simulated wait sits slightly
    # below the infinite-population formula.
    queue_s = result.summary["waiting_s"] - apply_s
    assert queue_s == pytest.approx(rho * apply_s / (2 * (1 - rho)), rel=0.15)


def test_equal_async_workers_settle_at_staleness_workers_minus_one():
    c = costs(nodes=1, gpus_per_node=8)
    result = simulate(c, "ps-async", iterations=10)
    staleness = result.staleness.to_numpy()
    assert list(staleness[:8]) == list(range(8))
    assert (staleness[8:] == 7).all()
    assert result.summary["staleness_mean"] == pytest.approx(staleness.mean())
    log = result.update_log
    assert (log["kind"] == "push").all() and len(log) == 80
    assert (np.diff(log["time_s"]) >= 0).all()


def test_staleness_bound_holds_back_fast_workers():
    c = costs(nodes=1, gpus_per_node=4)
    slow = StragglerModel(slow_workers=(0,), slow_factor=4.0)
    free = simulate(c, "ps-async", iterations=20, stragglers=slow)
    bounded = simulate(c, "ps-async", iterations=20, stragglers=slow,
                       options={"staleness_bound": 2})
    assert free.staleness.max() > 2 + 4 - 1
    assert bounded.staleness.max() <= 2 + 4 - 1
    assert bounded.summary["waiting_s"] > free.summary["waiting_s"]


def test_backup_workers_drop_the_slowest_gradients():
    c = costs(nodes=1, gpus_per_node=8)
    slow = StragglerModel(slow_workers=(5,), slow_factor=10.0)
    waiting = simulate(c, "ps-sync", iterations=5, stragglers=slow)
    backup = simulate(c, "ps-sync", iterations=5, stragglers=slow,
                      options={"backup_workers": 1})
    assert backup.summary["samples_processed"] == 5 * 7 * 32
    assert waiting.summary["samples_processed"] == 5 * 8 * 32
    steps = np.diff(np.concatenate([[0.0], backup.update_log["time_s"]]))
    # Without the slow worker a step costs little more than a nominal one.
    assert steps.max() < 2 * c.gradient_compute_s
    assert waiting.summary["simulated_time_s"] > 5 * 10 * c.gradient_compute_s


def test_async_carries_on_through_a_failure_that_stalls_sync():
    c = costs(nodes=1, gpus_per_node=8)
    restart_s = 2.0
    failure = ScriptedFailures(0, 0.3, restart_s)
    runs = {}
    for algorithm in ("ps-sync", "ps-async"):
        base = simulate(c, algorithm, iterations=20)
        failed = simulate(c, algorithm, iterations=20, stragglers=failure)
        runs[algorithm] = (failed.summary["simulated_time_s"]
                           - base.summary["simulated_time_s"], failed)
    sync_stall, _ = runs["ps-sync"]
    async_stall, failed = runs["ps-async"]
    assert restart_s <= sync_stall <= restart_s + c.gradient_compute_s + 0.01
    assert async_stall < 0.25 * restart_s
    log = failed.update_log
    during = log[(log["time_s"] > 0.31) & (log["time_s"] < 0.3 + restart_s)]
    assert len(during) > 0 and (during["worker"] != 0).all()


def test_ps_runs_are_deterministic():
    model = StragglerModel(noise=LogNormal(0.3))
    a = simulate(costs(), "ps-async", iterations=5, stragglers=model, seed=9,
                 options={"servers": 2})
    b = simulate(costs(), "ps-async", iterations=5, stragglers=model, seed=9,
                 options={"servers": 2})
    pd.testing.assert_frame_equal(a.iterations, b.iterations)
    pd.testing.assert_frame_equal(a.update_log, b.update_log)
    pd.testing.assert_series_equal(a.staleness, b.staleness)


@pytest.mark.parametrize("algorithm, options, field", [
    ("ps-sync", {"servers": 0}, "algorithm.servers"),
    ("ps-sync", {"servers": 9}, "algorithm.servers"),
    ("ps-sync", {"server_placement": "remote"}, "algorithm.server_placement"),
    ("ps-sync", {"backup_workers": 8}, "algorithm.backup_workers"),
    ("ps-sync", {"staleness_bound": 1}, "algorithm.staleness_bound"),
    ("ps-async", {"staleness_bound": -2}, "algorithm.staleness_bound"),
    ("ps-async", {"backup_workers": 1}, "algorithm.backup_workers"),
    ("ps-sync", {"aggregation": "host"}, "algorithm.aggregation"),
    ("ps-sync", {"aggregation": "node", "backup_workers": 1}, "algorithm.backup_workers"),
])
def test_bad_ps_options_name_the_field(algorithm, options, field):
    with pytest.raises(ConfigError) as error:
        simulate(costs(), algorithm, iterations=1, options=options)
    assert error.value.field == field


def test_dedicated_servers_need_a_network():
    with pytest.raises(ConfigError) as error:
        simulate(costs(nodes=1), "ps-async", iterations=1,
                 options={"server_placement": "dedicated"})
    assert error.value.field == "algorithm.server_placement"


def test_random_failures_of_the_straggler_model():
    # Failures of the contract's model: each one costs synchronous training at least its
    # restart; asynchronous training loses much less.
    c = costs(nodes=1, gpus_per_node=8)
    model = StragglerModel(failures=Failures(mtbf_s=5.0, restart_s=1.0))
    base = {a: simulate(c, a, iterations=40).summary["simulated_time_s"]
            for a in ("ps-sync", "ps-async")}
    sync = simulate(c, "ps-sync", iterations=40, stragglers=model, seed=4)
    async_ = simulate(c, "ps-async", iterations=40, stragglers=model, seed=4)
    assert sync.summary["failures"] >= 2
    assert sync.summary["simulated_time_s"] - base["ps-sync"] >= 1.0
    assert (async_.summary["simulated_time_s"] - base["ps-async"]
            < 0.5 * (sync.summary["simulated_time_s"] - base["ps-sync"]))
