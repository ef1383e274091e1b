import csv
import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import catalog
from models import collectives as c
from models.errors import ConfigError

MiB = 2**20
ALPHA = 5e-6
BW = 10e9


def h200_node(link_efficiency=None):
    cluster = catalog.cluster("h200-sxm", 1, 8, "nvlink4")
    if link_efficiency is None:
        return cluster
    link = dataclasses.replace(cluster.intra_link, efficiency=link_efficiency)
    return dataclasses.replace(cluster, intra_link=link)


def multi_node(nodes=4, nics=8, topology="single-switch", oversubscription=1.0):
    return catalog.cluster("h200-sxm", nodes, 8, "nvlink4", "ib-ndr", nics_per_node=nics,
                           topology=topology, oversubscription=oversubscription,
                           nodes_per_leaf=2)


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("p", [2, 3, 8, 64])
def test_ring_allreduce_matches_thakur_closed_form(p):
    n = 100 * MiB
    expected = 2 * (p - 1) * ALPHA + 2 * (p - 1) / p * n / BW
    assert c.ring_allreduce_time_s(n, p, ALPHA, BW) == pytest.approx(expected, rel=1e-12)
    # Bandwidth term alone: 2(p-1)/p * n / B exactly.
    assert c.ring_allreduce_time_s(n, p, 0.0, BW) == pytest.approx(2 * (p - 1) / p * n / BW,
                                                                  rel=1e-12)


def test_one_rank_costs_nothing():
    for f in (c.ring_allreduce_time_s, c.ring_reduce_scatter_time_s, c.ring_all_gather_time_s,
              c.recursive_halving_doubling_allreduce_time_s,
              c.double_binary_tree_allreduce_time_s, c.mpich_broadcast_time_s):
        assert f(MiB, 1, ALPHA, BW) == 0.0
    single = catalog.cluster("h200-sxm", 1, 1, "nvlink4")
    assert c.allreduce_time_s(MiB, single) == 0.0
    assert c.all_gather_time_s(MiB, single) == 0.0
    assert c.broadcast_time_s(MiB, single) == 0.0


@pytest.mark.parametrize("p", [2, 4, 8, 16, 1024])
def test_recursive_halving_doubling_power_of_two(p):
    # TRG05: 2 lg p alpha + 2 (p-1)/p n beta.
    assert c.recursive_halving_doubling_allreduce_time_s(0, p, ALPHA, BW) == pytest.approx(
        2 * math.log2(p) * ALPHA)
    n = 64 * MiB
    assert c.recursive_halving_doubling_allreduce_time_s(n, p, ALPHA, BW) == pytest.approx(
        2 * math.log2(p) * ALPHA + 2 * (p - 1) / p * n / BW)


def test_recursive_halving_doubling_non_power_of_two_pays_two_extra_full_steps():
    # p = 6: p' = 4 run the algorithm, 2 ranks fold in before and get the result after.
    n = 8 * MiB
    expected = 2 * 2 * ALPHA + 2 * 3 / 4 * n / BW + 2 * (ALPHA + n / BW)
    assert c.recursive_halving_doubling_allreduce_time_s(n, 6, ALPHA, BW) == pytest.approx(
        expected)


@pytest.mark.parametrize("p", [2, 5, 8, 33])
def test_ring_reduce_scatter_plus_all_gather_is_ring_allreduce(p):
    n = 48 * MiB
    total = (c.ring_reduce_scatter_time_s(n, p, ALPHA, BW)
             + c.ring_all_gather_time_s(n, p, ALPHA, BW))
    assert total == pytest.approx(c.ring_allreduce_time_s(n, p, ALPHA, BW), rel=1e-12)


def test_double_binary_tree_has_log_depth_latency():
    assert c.double_binary_tree_allreduce_time_s(0, 1024, ALPHA, BW) == pytest.approx(
        2 * 10 * ALPHA)
    assert c.double_binary_tree_allreduce_time_s(0, 1024, ALPHA, BW) < \
        c.ring_allreduce_time_s(0, 1024, ALPHA, BW) / 50


def test_mpich_broadcast_uses_binomial_for_short_and_scatter_allgather_for_long():
    p = 16
    assert c.mpich_broadcast_time_s(8, p, ALPHA, BW) == pytest.approx(4 * (ALPHA + 8 / BW))
    n = 1024 * MiB
    assert c.mpich_broadcast_time_s(n, p, ALPHA, BW) == pytest.approx(
        (4 + 15) * ALPHA + 2 * 15 / 16 * n / BW)


def test_hierarchical_allreduce_closed_form():
    n, g, nodes = 256 * MiB, 8, 4
    intra_bw, node_bw = 400e9, 8 * 45e9
    expected = (2 * ((g - 1) * 1e-6 + (g - 1) / g * n / intra_bw)
                + 2 * (nodes - 1) * 3e-6 + 2 * (nodes - 1) / nodes * (n / g) / (node_bw / g))
    got = c.hierarchical_allreduce_time_s(n, g, nodes, 1e-6, intra_bw, 3e-6, node_bw)
    assert got == pytest.approx(expected)


def test_parameter_server_slower_side_sets_the_time():
    n = 100 * MiB
    # 8 workers, 2 servers: each server receives 4n, each worker sends n.
    assert c.parameter_server_time_s(n, 8, 2, 0.0, BW, BW) == pytest.approx(4 * n / BW)
    # Enough servers: the worker NIC (n) is the bottleneck.
    assert c.parameter_server_time_s(n, 8, 16, 0.0, BW, BW) == pytest.approx(n / BW)


def test_ps_on_cluster_dedicated_and_colocated():
    cluster = multi_node(nodes=4, nics=1)
    node_bw = cluster.node_bandwidth_Bps
    alpha = cluster.inter_link.latency_s
    n = 100 * MiB
    # Dedicated: 32 workers, 4 server nodes: each server NIC receives 8n; each worker node
    # sends 8n (8 GPUs share one NIC). Both 8n / node_bw.
    assert c.ps_push_time_s(n, cluster, 4, dedicated_servers=True) == pytest.approx(
        alpha + 8 * n / node_bw)
    # Colocated, one server per node: a node sends 8 * n * 3/4 and receives 24 n / 4.
    assert c.ps_push_time_s(n, cluster, 4) == pytest.approx(alpha + 6 * n / node_bw)
    assert c.ps_pull_time_s(n, cluster, 4) == c.ps_push_time_s(n, cluster, 4)


def test_ps_one_node_colocated_uses_the_gpu_link():
    cluster = h200_node()
    bw = cluster.intra_link.achievable_bandwidth_Bps
    n = 64 * MiB
    # 8 servers on 8 GPUs: each GPU sends 7n/8 and receives 7n/8.
    assert c.ps_push_time_s(n, cluster, 8) == pytest.approx(
        cluster.intra_link.latency_s + 7 / 8 * n / bw)


def test_gossip_pair_exchange():
    one = h200_node()
    n = 10 * MiB
    assert c.gossip_exchange_time_s(n, one) == pytest.approx(
        one.intra_link.latency_s + n / one.intra_link.achievable_bandwidth_Bps)
    many = multi_node(nodes=4, nics=1)
    # 8 GPUs of a node share its single NIC.
    assert c.gossip_exchange_time_s(n, many) == pytest.approx(
        many.inter_link.latency_s + n / (many.node_bandwidth_Bps / 8))


# ---------------------------------------------------------------- NCCL model on clusters


def test_nccl_ring_simple_on_one_node_is_thakur_ring_with_nccl_latencies():
    cluster = h200_node()
    n = 512 * MiB
    times = c.nccl_candidate_times_s("allreduce", n, cluster)
    # tuning.cc: Ring/Simple = 8.4 us + 2(p-1) * 3.4 us on NVLink; bus bandwidth = link.
    latency = 8.4e-6 + 14 * 3.4e-6
    bw = cluster.intra_link.achievable_bandwidth_Bps
    assert times["ring", "simple"] == pytest.approx(latency + 2 * 7 / 8 * n / bw)


def test_nccl_graph_on_nvlink4_fills_the_gpu_nvlink_bandwidth():
    # search.cc on Hopper: 18 NVLinks x 20.6 GB/s (SM90_NVLINK_BW) = 370.8 GB/s per GPU;
    # of the sm90 speeds 60, 50, 40, 30, 24, ... the best fit is 6 x 60 = 360 GB/s.
    graph = c.nccl_graph(h200_node())
    assert graph.bus_GBps == pytest.approx(360.0)
    assert graph.channels == 16
    # Across nodes each channel also crosses a 400 Gbit/s (50 GB/s) NIC: 8 x 45 = 360.
    assert c.nccl_graph(multi_node(nodes=2, nics=8)).bus_GBps == pytest.approx(360.0)
    # One NIC per node: 48 GB/s is the fastest channel it carries.
    assert c.nccl_graph(multi_node(nodes=2, nics=1)).bus_GBps == pytest.approx(48.0)


def test_nccl_tuner_matches_tuning_cc_closed_forms_on_one_nvlink_node():
    cluster = h200_node()
    n = 4 * MiB
    times = c.nccl_tuner_times_s("allreduce", n, cluster)
    ring_ratio = 8 / 14  # nRanks / nsteps
    # Ring/LL: 6.6 + 14 x 0.6 us; bus bandwidth min(llMaxBw 141, 360 x 0.5).
    assert times["ring", "ll"] == pytest.approx(
        (6.6 + 14 * 0.6) * 1e-6 + n / (141e9 * ring_ratio))
    # Ring/LL128: 14 + 14 x 1.9 us; min(360 x 0.92, 16 channels x 36.7).
    assert times["ring", "ll128"] == pytest.approx(
        (14.0 + 14 * 1.9) * 1e-6 + n / (360e9 * 0.92 * ring_ratio))
    # NVLS: 25 us; 16 x min(22.5 x 0.85 x 15/16 x 2, 22.5) GB/s of bus bandwidth.
    assert times["nvls", "simple"] == pytest.approx(25e-6 + n / (360e9 * ring_ratio))
    # Tree/Simple: 8.4 + 2 x 7 x 4.0 us; min(360 x 0.92, 16 x 38.7) / 2, corrected by
    # treeCorrectionFactor[Simple][log2(4 MiB / 64) = 16] = 0.7.
    assert times["tree", "simple"] == pytest.approx(
        (8.4 + 14 * 4.0) * 1e-6 + n / (360e9 * 0.92 * 0.5 * 0.7))


def test_selection_picks_ll_for_tiny_messages_and_simple_for_large_on_nvlink():
    for cluster in (h200_node(), catalog.cluster("h100-sxm", 1, 8, "nvlink4"),
                    catalog.cluster("v100-sxm2", 1, 8, "nvlink2")):
        assert c.nccl_selection("allreduce", 8, cluster)[1] == "ll"
        assert c.nccl_selection("allreduce", 64 * 1024, cluster)[1] == "ll"
        assert c.nccl_selection("allreduce", 2**30, cluster)[1] == "simple"
    # With NVLink SHARP the large messages go to NVLS, without it to a ring.
    assert c.nccl_selection("allreduce", 2**30, h200_node()) == ("nvls", "simple")
    assert c.nccl_selection("allreduce", 2**30, catalog.cluster("v100-sxm2", 1, 8, "nvlink2")
                            )[0] == "ring"


def test_forcing_an_algorithm_lets_the_tuner_pick_its_protocol():
    cluster = h200_node()
    assert c.nccl_selection("allreduce", 8, cluster, "ring") == ("ring", "ll")
    assert c.nccl_selection("allreduce", 2**30, cluster, "ring") == ("ring", "simple")
    with pytest.raises(ConfigError, match="algorithm: 'nvls_tree'"):
        c.nccl_selection("allreduce", MiB, cluster, "nvls_tree")


def test_nvls_chunk_follows_nccl_enqueue_rule():
    # 16 channels x 8 heads share a chunk that halves from 128 KiB below 64, 8 and 2
    # times (128 x chunk): thresholds at 1 GiB, 64 MiB and 8 MiB.
    cluster = h200_node()
    assert c.nvls_chunk_bytes(8 * MiB - 1, cluster) == 16384
    assert c.nvls_chunk_bytes(8 * MiB, cluster) == 32768
    assert c.nvls_chunk_bytes(64 * MiB - 1, cluster) == 32768
    assert c.nvls_chunk_bytes(64 * MiB, cluster) == 65536
    assert c.nvls_chunk_bytes(2**30 - 1, cluster) == 65536
    assert c.nvls_chunk_bytes(2**30, cluster) == 131072


def test_nvls_achieved_time_is_the_pipeline_closed_form():
    cluster = h200_node()
    fit = c.achieved_constants()["nvlink4"]["nvls"]
    n = 256 * MiB
    window = 16 * 8 * 65536
    bandwidth = fit["efficiency"] * cluster.intra_link.bandwidth_Bps * 8 / 9
    step = window / bandwidth + fit["step_overhead_us"] * 1e-6
    expected = fit["launch_us"] * 1e-6 + (n / window + fit["pipeline_depth"]) * step
    assert c.achieved_time_s("allreduce", ("nvls", "simple"), n, cluster) == pytest.approx(
        expected)


@pytest.mark.parametrize("protocol, size", [("ll", 2 * MiB), ("ll128", 16 * MiB),
                                            ("simple", 1024 * MiB)])
def test_a100_ring_achieved_time_is_the_fitted_closed_form(protocol, size):
    cluster = catalog.cluster("a100-sxm4-80gb", 1, 8, "nvlink3")
    fit = c.achieved_constants()["nvlink3"][f"ring_{protocol}"]
    threads = c._constants()["threads"]
    saturation = 16 * threads[f"{protocol}_threads"] * threads[f"{protocol}_threshold_bytes"] * 8
    bus = fit["bus_efficiency"] * 300e9
    expected = fit["latency_us"] * 1e-6 + 2 * 7 / 8 * max(size, saturation) / bus
    assert c.achieved_time_s("allreduce", ("ring", protocol), size, cluster) == pytest.approx(
        expected, rel=1e-12)


def test_a100_medium_all_reduce_is_slower_than_nccls_own_model():
    # Azure ND A100 v4 (NCCL 2.18.5): 16 MiB in-place all-reduce at 109.22 GB/s busbw,
    # where NCCL's tuner credits LL128 with 0.92 of the link.
    cluster = catalog.cluster("a100-sxm4-80gb", 1, 8, "nvlink3")
    n = 16 * MiB
    assert c.nccl_selection("allreduce", n, cluster) == ("ring", "ll128")
    busbw = c.predict_allreduce_busbw_Bps(n, cluster) / 1e9
    assert busbw == pytest.approx(109.22, rel=0.05)


def test_nvls_only_on_nvswitch_sharp_systems():
    assert ("nvls", "simple") in c.nccl_candidate_times_s("allreduce", MiB, h200_node())
    nvlink2 = catalog.cluster("v100-sxm2", 1, 8, "nvlink2")
    assert ("nvls", "simple") not in c.nccl_candidate_times_s("allreduce", MiB, nvlink2)
    assert ("nvls", "simple") not in c.nccl_candidate_times_s("allreduce", MiB, multi_node())
    # Across nodes NVLink SHARP joins the nodes by a tree (NVLS tree) instead.
    assert ("nvls_tree", "simple") in c.nccl_candidate_times_s("allreduce", MiB, multi_node())
    with pytest.raises(ConfigError, match="algorithm: 'nvls'"):
        c.allreduce_time_s(MiB, nvlink2, "nvls")


def test_nvls_bus_bandwidth_exceeds_ring_on_hopper():
    cluster = h200_node()
    n = 16 * 2**30
    nvls = c.predict_allreduce_busbw_Bps(n, cluster, "nvls")
    ring = c.predict_allreduce_busbw_Bps(n, cluster, "ring")
    assert ring <= cluster.intra_link.achievable_bandwidth_Bps
    assert nvls > 1.15 * ring


def test_multi_node_ring_is_bound_by_the_node_nics():
    cluster = multi_node(nodes=4, nics=1)
    n = 4 * 2**30
    busbw = c.predict_allreduce_busbw_Bps(n, cluster, "ring")
    assert busbw < cluster.node_bandwidth_Bps
    assert busbw > 0.9 * cluster.node_bandwidth_Bps
    # A fat tree spanning leaves with 2:1 oversubscription halves the inter-node share.
    tapered = multi_node(nodes=4, nics=1, topology="fat-tree", oversubscription=2.0)
    assert c.predict_allreduce_busbw_Bps(n, tapered, "ring") == pytest.approx(busbw / 2,
                                                                            rel=0.02)


def test_nvls_tree_beyond_two_nodes_is_bound_by_half_the_node_network():
    # A tree sends each GPU's shard up and down: half the NICs' bandwidth per direction.
    cluster = multi_node(nodes=8, nics=8)
    n = 16 * 2**30
    algbw = n / c.allreduce_time_s(n, cluster, "nvls_tree")
    assert algbw == pytest.approx(cluster.node_bandwidth_Bps / 2, rel=0.01)


def test_tree_beats_ring_on_latency_at_scale():
    cluster = multi_node(nodes=64, nics=8)
    assert c.allreduce_time_s(8, cluster, "tree") < c.allreduce_time_s(8, cluster, "ring") / 5


def test_all_algorithms_run_on_a_multi_node_cluster():
    cluster = multi_node()
    n = 100 * MiB
    times = {a: c.allreduce_time_s(n, cluster, a) for a in c.ALLREDUCE_ALGORITHMS
             if a != "nvls"}
    assert all(t > 0 for t in times.values())
    pair = c.nccl_selection("allreduce", n, cluster)
    assert times["auto"] == c.achieved_time_s("allreduce", pair, n, cluster)
    assert times["auto"] == times[pair[0]]
    for f in (c.reduce_scatter_time_s, c.all_gather_time_s, c.broadcast_time_s):
        assert f(n, cluster) > 0


# ---------------------------------------------------------------- properties

sizes = st.floats(min_value=0, max_value=2**36, allow_nan=False)
rank_counts = st.integers(min_value=1, max_value=4096)
bandwidths = st.floats(min_value=1e8, max_value=1e13)
latencies = st.floats(min_value=0, max_value=1e-3)
PRIMITIVES = (c.ring_allreduce_time_s, c.ring_reduce_scatter_time_s,
              c.recursive_halving_doubling_allreduce_time_s,
              c.double_binary_tree_allreduce_time_s, c.mpich_broadcast_time_s)


@given(sizes, rank_counts, latencies, bandwidths, st.floats(min_value=1.0, max_value=100.0))
def test_more_bandwidth_is_never_slower(n, p, alpha, bw, gain):
    for f in PRIMITIVES:
        assert f(n, p, alpha, bw * gain) <= f(n, p, alpha, bw) * (1 + 1e-12)


@given(sizes, sizes, rank_counts, latencies, bandwidths)
def test_cost_is_non_decreasing_in_size(a, b, p, alpha, bw):
    small, large = sorted((a, b))
    for f in PRIMITIVES:
        assert f(small, p, alpha, bw) <= f(large, p, alpha, bw) * (1 + 1e-12)


CLUSTERS = [h200_node(), catalog.cluster("v100-sxm2", 1, 8, "nvlink2"), multi_node(),
            multi_node(nodes=64, nics=1, topology="fat-tree", oversubscription=2.0)]


@given(sizes, st.sampled_from(CLUSTERS))
def test_auto_runs_the_tuner_pick_at_its_achieved_time(n, cluster):
    pair = c.nccl_selection("allreduce", n, cluster)
    tuner = c.nccl_tuner_times_s("allreduce", n, cluster)
    assert all(tuner[pair] <= t for t in tuner.values())
    assert c.allreduce_time_s(n, cluster) == c.achieved_time_s("allreduce", pair, n, cluster)


@given(sizes, sizes, st.sampled_from(CLUSTERS))
def test_each_pair_takes_longer_for_more_bytes(a, b, cluster):
    # Except where NCCL doubles the NVLS chunk: the bigger chunk needs fewer pipeline steps
    # and the time steps down, by at most 5% (1 GiB on 8 GPUs, 64 KiB -> 128 KiB).
    small, large = sorted((a, b))
    for pair, t_small in c.nccl_candidate_times_s("allreduce", small, cluster).items():
        t_large = c.achieved_time_s("allreduce", pair, large, cluster)
        slack = 0.95 if pair[0] == "nvls" else 1 - 1e-12
        assert t_large >= t_small * slack


@given(sizes, st.sampled_from(CLUSTERS), st.floats(min_value=1.0, max_value=10.0))
def test_faster_links_never_slow_a_pair(n, cluster, gain):
    # Per pair only: a faster link can move NCCL's tuner to another pair, which need not
    # be faster in fact (NCCL picks by its own predictions).
    faster_intra = dataclasses.replace(cluster.intra_link,
                                       bandwidth_Bps=cluster.intra_link.bandwidth_Bps * gain)
    faster = dataclasses.replace(cluster, intra_link=faster_intra)
    if cluster.inter_link is not None:
        faster = dataclasses.replace(faster, inter_link=dataclasses.replace(
            cluster.inter_link, bandwidth_Bps=cluster.inter_link.bandwidth_Bps * gain))
    for pair, before in c.nccl_candidate_times_s("allreduce", n, cluster).items():
        assert c.achieved_time_s("allreduce", pair, n, faster) <= before * (1 + 1e-12)


SWEEP = [2**e for e in range(3, 35)]  # all_reduce_perf -b 8 -e 16G -f 2


@pytest.mark.parametrize("cluster", [h200_node(), catalog.cluster("h100-sxm", 1, 8, "nvlink4"),
                                     catalog.cluster("v100-sxm2", 1, 8, "nvlink2"),
                                     multi_node(nodes=2, nics=8)],
                         ids=["h200", "h100", "v100", "h200-2-nodes"])
def test_auto_busbw_is_non_decreasing_over_the_nccl_tests_sweep(cluster):
    busbw = [c.predict_allreduce_busbw_Bps(n, cluster) for n in SWEEP]
    assert all(b >= a for a, b in zip(busbw, busbw[1:], strict=False))


# ---------------------------------------------------------------- nccl-tests definitions


def test_busbw_definitions_follow_nccl_tests():
    # doc/PERFORMANCE.md: algbw = S/t; busbw = algbw * 2(n-1)/n (all-reduce),
    # (n-1)/n (reduce-scatter, all-gather), 1 (broadcast, reduce).
    assert c.algbw_Bps(1e9, 0.01) == pytest.approx(1e11)
    assert c.busbw_Bps("allreduce", 1e9, 0.01, 8) == pytest.approx(1e11 * 14 / 8)
    assert c.busbw_Bps("reduce_scatter", 1e9, 0.01, 8) == pytest.approx(1e11 * 7 / 8)
    assert c.busbw_Bps("all_gather", 1e9, 0.01, 4) == pytest.approx(1e11 * 3 / 4)
    assert c.busbw_Bps("broadcast", 1e9, 0.01, 8) == pytest.approx(1e11)
    assert c.busbw_Bps("reduce", 1e9, 0.01, 8) == pytest.approx(1e11)


def test_ring_busbw_equals_link_bandwidth_for_large_messages():
    n, p = 2**34, 16
    t = c.ring_allreduce_time_s(n, p, ALPHA, BW)
    assert c.busbw_Bps("allreduce", n, t, p) == pytest.approx(BW, rel=1e-4)


# ---------------------------------------------------------------- published measurements

# Stas Bekman, ML Engineering, network/benchmarks/README.md (github.com/stas00/ml-engineering
# commit 0cc3de50): one node of 8x H200 SXM (NVLink 4 through NVSwitch), nccl-tests
# all_reduce_perf, NCCL 2.30.7, busbw column. Rows p49-p53 of data/validation/published.csv.
# No constant of the model was fitted to them (benchmarks/collectives_fit.py fits the
# H100 rows n01-n33 only).
H200_BUSBW_GBps = {MiB: 72.45, 16 * MiB: 242.45, 128 * MiB: 411.21, 2**30: 464.0,
                   16 * 2**30: 480.7}
# Two nodes of 8x H100, 8 InfiniBand NDR HCAs each (SkyPilot examples/nebius_infiniband and
# examples/together_infiniband READMEs, rows n24-n33), out-of-place busbw.
TWO_NODE_H100_BUSBW_GBps = {512 * MiB: (413.79, 418.12), 2**30: (445.09, 444.99),
                            2 * 2**30: (458.30, 458.21), 4 * 2**30: (462.73, 464.77),
                            8 * 2**30: (467.28, 467.36)}
CSV = Path(__file__).resolve().parents[1] / "data" / "validation" / "published.csv"


@pytest.mark.parametrize("size", sorted(H200_BUSBW_GBps))
def test_h200_allreduce_busbw_within_15_percent(size):
    predicted = c.predict_allreduce_busbw_Bps(size, h200_node()) / 1e9
    assert predicted == pytest.approx(H200_BUSBW_GBps[size], rel=0.15)


@pytest.mark.parametrize("size", sorted(TWO_NODE_H100_BUSBW_GBps))
def test_two_node_h100_infiniband_busbw_within_15_percent(size):
    cluster = catalog.cluster("h100-sxm", 2, 8, "nvlink4", "ib-ndr", nics_per_node=8)
    predicted = c.predict_allreduce_busbw_Bps(size, cluster) / 1e9
    for measured in TWO_NODE_H100_BUSBW_GBps[size]:
        assert predicted == pytest.approx(measured, rel=0.15)


def test_published_rows_match_the_validation_file():
    with open(CSV, newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    for row_id in ("p49", "p50", "p51", "p52", "p53"):
        row = rows[row_id]
        assert float(row["value"]) == H200_BUSBW_GBps[int(row["message_bytes"])]
    two_node = [row for row in rows.values() if row["gpu"] == "h100-sxm"
                and row["gpus_total"] == "16"]
    assert len(two_node) == 10
    for row in two_node:
        assert float(row["value"]) in TWO_NODE_H100_BUSBW_GBps[int(row["message_bytes"])]


def test_achieved_constants_are_not_fitted_to_h200_or_v100_rows():
    # The fit script takes its rows by GPU: H200 and V100 rows must stay out of it.
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "collectives_fit.py"
    spec = importlib.util.spec_from_file_location("collectives_fit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    rows = module.load_rows()
    fitted = {row.id for row in rows if row.in_sample}
    assert {"p49", "p50", "p51", "p52", "p53"}.isdisjoint(fitted)
    assert not any(row.cluster.gpu.id == "v100-sxm2" for row in rows if row.in_sample)
    assert sum(row.cluster.gpu.id == "h100-sxm" for row in rows if row.in_sample) == 33
    assert sum(row.cluster.gpu.id.startswith("a100") for row in rows if row.in_sample) == 17
    assert not any(row.cluster.nodes > 1 for row in rows
                   if row.in_sample and row.cluster.gpu.id.startswith("a100"))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, field", [
    (lambda: c.ring_allreduce_time_s(-1, 4, ALPHA, BW), "size_bytes"),
    (lambda: c.ring_allreduce_time_s(1, 0, ALPHA, BW), "ranks"),
    (lambda: c.ring_allreduce_time_s(1, 4, -1e-6, BW), "latency_s"),
    (lambda: c.ring_allreduce_time_s(1, 4, ALPHA, 0), "bandwidth_Bps"),
    (lambda: c.allreduce_time_s(-5, h200_node()), "size_bytes"),
    (lambda: c.allreduce_time_s(1, h200_node(), "rign"), "algorithm"),
    (lambda: c.busbw_Bps("alltoall", 1, 1, 2), "collective"),
    (lambda: c.algbw_Bps(1, 0), "time_s"),
    (lambda: c.ps_push_time_s(1, h200_node(), 0), "servers"),
    (lambda: c.ps_push_time_s(1, h200_node(), 2, workers=9), "workers"),
    (lambda: c.ps_push_time_s(1, h200_node(), 2, dedicated_servers=True), "cluster.inter_link"),
    (lambda: c.predict_allreduce_busbw_Bps(0, h200_node()), "size_bytes"),
])
def test_bad_input_raises_config_error_naming_the_field(call, field):
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.field == field


def test_unknown_algorithm_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'ring'"):
        c.allreduce_time_s(1, h200_node(), "rign")
