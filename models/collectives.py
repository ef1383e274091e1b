"""Communication cost models: collectives, parameter servers and gossip, in SI units.

Two layers.

*Primitive* functions take plain numbers (``size_bytes``, ``ranks``, ``latency_s``,
``bandwidth_Bps``) and return the alpha-beta cost of one textbook algorithm, with
``alpha`` the per-message latency and ``1/beta`` the per-direction bandwidth of the
bottleneck link (full-duplex links throughout). Sources:

- Thakur, Rabenseifner, Gropp, "Optimization of Collective Communication Operations in
  MPICH", IJHPCA 19(1), 2005 (TRG05): ring and recursive halving-doubling all-reduce,
  reduce-scatter, all-gather, broadcast.
- Patarasuk, Yuan, "Bandwidth optimal all-reduce algorithms for clusters of
  workstations", JPDC 69(2), 2009 (PY09): ring all-reduce is bandwidth optimal,
  2(p-1)/p * n per rank each way.
- Sanders, Speck, Träff, "Two-tree algorithms for full bandwidth broadcast, reduction and
  scan", Parallel Computing 35(12), 2009, and NCCL 2.4's double binary tree.

*Cluster-level* functions take a :class:`models.hardware.ClusterSpec` and model what NCCL
does on it, in two steps. NCCL's tuner picks the (algorithm, protocol) pair: for every
pair NCCL would consider on that topology it predicts ``latency + bytes / bandwidth`` with
its own latency tables, protocol factors and bandwidth caps (``data/hardware/
collectives.toml [nccl]``, from ``src/graph/tuning.cc``) over the graph its topology search
builds, and runs the least. The achieved-time model then says how long that pair takes:
constants fitted to published nccl-tests runs where the hardware has them
(``[achieved]``, ``benchmarks/collectives_fit.py``; an NVLS pipeline whose chunk follows
NCCL's own rule), NCCL's latencies over the bottleneck link otherwise: the intra-node link
within one node; across nodes, the node's NICs shared by its GPUs
(``ClusterSpec.node_bandwidth_Bps``, or the bisection share when a fat tree spans leaf
switches). ``algorithm="auto"`` is the pair NCCL picks, which is not always the fastest.

Sizes follow nccl-tests: ``size_bytes`` is the full vector (all-reduce input, all-gather
output, reduce-scatter input, broadcast buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from models.catalog import data_dir, read_toml
from models.errors import ConfigError, nearest, require_choice, require_int, require_number
from models.hardware import ClusterSpec, LinkSpec

#: Algorithms of :func:`allreduce_time_s`. ring, tree and nvls are NCCL's; the last two are
#: MPI/Horovod-style compositions that NCCL does not run, so "auto" never picks them.
ALLREDUCE_ALGORITHMS = ("auto", "ring", "tree", "nvls", "nvls_tree",
                        "recursive_halving_doubling", "hierarchical")
NCCL_ALGORITHMS = ("ring", "tree", "nvls", "nvls_tree")
PROTOCOLS = ("ll", "ll128", "simple")
#: nccl-tests bus-bandwidth factors (doc/PERFORMANCE.md), as functions of the rank count.
BUSBW_FACTORS = {
    "allreduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "all_gather": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
}

_HW_CLASS = {"nvlink": "nvlink", "pcie": "pci", "infinity-fabric": "pci",
             "rdma": "net", "tcp": "net"}


# --------------------------------------------------------------------------------------
# Input checks


def _size(size_bytes: Any) -> float:
    return require_number("size_bytes", size_bytes, minimum=0.0)


def _ranks(ranks: Any, field: str = "ranks") -> int:
    return require_int(field, ranks, minimum=1)


def _latency(latency_s: Any, field: str = "latency_s") -> float:
    return require_number(field, latency_s, minimum=0.0)


def _bandwidth(bandwidth_Bps: Any, field: str = "bandwidth_Bps") -> float:
    return require_number(field, bandwidth_Bps, minimum=0.0, exclusive_minimum=True)


def _check(size_bytes, ranks, latency_s, bandwidth_Bps) -> tuple[float, int, float, float]:
    return _size(size_bytes), _ranks(ranks), _latency(latency_s), _bandwidth(bandwidth_Bps)


def _log2_ceil(p: int) -> int:
    return (p - 1).bit_length()


# --------------------------------------------------------------------------------------
# Primitive alpha-beta costs


def ring_allreduce_time_s(size_bytes, ranks, latency_s, bandwidth_Bps) -> float:
    """Ring all-reduce: 2(p-1) alpha + 2(p-1)/p * n/B (TRG05 sec. 4.4; PY09)."""
    n, p, alpha, bw = _check(size_bytes, ranks, latency_s, bandwidth_Bps)
    if p == 1:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n / bw


def ring_reduce_scatter_time_s(size_bytes, ranks, latency_s, bandwidth_Bps) -> float:
    """Ring reduce-scatter of an n-byte vector: (p-1) alpha + (p-1)/p * n/B (TRG05)."""
    n, p, alpha, bw = _check(size_bytes, ranks, latency_s, bandwidth_Bps)
    if p == 1:
        return 0.0
    return (p - 1) * alpha + (p - 1) / p * n / bw


def ring_all_gather_time_s(size_bytes, ranks, latency_s, bandwidth_Bps) -> float:
    """Ring all-gather into an n-byte vector: (p-1) alpha + (p-1)/p * n/B (TRG05 sec. 3.1)."""
    return ring_reduce_scatter_time_s(size_bytes, ranks, latency_s, bandwidth_Bps)


def recursive_halving_doubling_allreduce_time_s(size_bytes, ranks, latency_s,
                                                bandwidth_Bps) -> float:
    """Rabenseifner's all-reduce: recursive-halving reduce-scatter + recursive-doubling
    all-gather, 2 log2(p) alpha + 2(p-1)/p * n/B for p a power of two (TRG05 sec. 4.4).

    Other p as MPICH does it: with p' the largest power of two below p, r = p - p' ranks
    first hand their whole vector to a partner (alpha + n/B), p' ranks run the algorithm,
    and the partners get the result back (alpha + n/B).
    """
    n, p, alpha, bw = _check(size_bytes, ranks, latency_s, bandwidth_Bps)
    if p == 1:
        return 0.0
    core = 1 << (p.bit_length() - 1)
    time = 2 * (core.bit_length() - 1) * alpha + 2 * (core - 1) / core * n / bw
    if core != p:
        time += 2 * (alpha + n / bw)
    return time


def double_binary_tree_allreduce_time_s(size_bytes, ranks, latency_s, bandwidth_Bps) -> float:
    """Pipelined double binary tree all-reduce: 2 ceil(log2 p) alpha + 2 n/B.

    Two complementary binary trees each reduce then broadcast half the vector, pipelined
    in small chunks, so latency grows with the depth log2 p (up and down) rather than p.
    Every rank is interior in one tree and a leaf in the other: it receives n/2 from each
    of two children and sends n/2 up (reduce), then the mirror image (broadcast), i.e. 2n
    each way. That is NCCL's own model (algorithm bandwidth = bus bandwidth / 2,
    tuning.cc); a reduction or broadcast alone would take n/B (Sanders et al. 2009).
    """
    n, p, alpha, bw = _check(size_bytes, ranks, latency_s, bandwidth_Bps)
    if p == 1:
        return 0.0
    return 2 * _log2_ceil(p) * alpha + 2 * n / bw


def mpich_broadcast_time_s(size_bytes, ranks, latency_s, bandwidth_Bps) -> float:
    """MPICH broadcast: the faster of a binomial tree, ceil(log2 p)(alpha + n/B), for short
    messages and scatter + ring all-gather (van de Geijn), (ceil(log2 p) + p - 1) alpha +
    2(p-1)/p * n/B, for long ones (TRG05 sec. 3.2)."""
    n, p, alpha, bw = _check(size_bytes, ranks, latency_s, bandwidth_Bps)
    if p == 1:
        return 0.0
    depth = _log2_ceil(p)
    binomial = depth * (alpha + n / bw)
    scatter_allgather = (depth + p - 1) * alpha + 2 * (p - 1) / p * n / bw
    return min(binomial, scatter_allgather)


def hierarchical_allreduce_time_s(size_bytes, gpus_per_node, nodes, intra_latency_s,
                                  intra_bandwidth_Bps, inter_latency_s,
                                  node_bandwidth_Bps) -> float:
    """Intra-node ring reduce-scatter, inter-node ring all-reduce, intra-node all-gather.

    After the reduce-scatter each of the g GPUs of a node holds an n/g shard; the g shards
    are all-reduced across the nodes at once, sharing the node's NICs
    (``node_bandwidth_Bps``, all NICs together), so each gets 1/g of it.
    """
    n = _size(size_bytes)
    g = _ranks(gpus_per_node, "gpus_per_node")
    nodes = _ranks(nodes, "nodes")
    intra = (_latency(intra_latency_s, "intra_latency_s"),
             _bandwidth(intra_bandwidth_Bps, "intra_bandwidth_Bps"))
    inter_latency = _latency(inter_latency_s, "inter_latency_s")
    node_bw = _bandwidth(node_bandwidth_Bps, "node_bandwidth_Bps")
    return (ring_reduce_scatter_time_s(n, g, *intra)
            + ring_allreduce_time_s(n / g, nodes, inter_latency, node_bw / g)
            + ring_all_gather_time_s(n, g, *intra))


def parameter_server_time_s(size_bytes, workers, servers, latency_s, worker_bandwidth_Bps,
                            server_bandwidth_Bps) -> float:
    """One push (or pull) of n bytes sharded over S servers, every worker and server on
    its own NIC: each worker sends n (n/S to each server) and each server receives
    W * n/S; the slower side sets the time. A pull is the same traffic reversed."""
    n = _size(size_bytes)
    w = _ranks(workers, "workers")
    s = _ranks(servers, "servers")
    alpha = _latency(latency_s)
    worker_bw = _bandwidth(worker_bandwidth_Bps, "worker_bandwidth_Bps")
    server_bw = _bandwidth(server_bandwidth_Bps, "server_bandwidth_Bps")
    return alpha + max(n / worker_bw, w * n / s / server_bw)


def pair_exchange_time_s(size_bytes, latency_s, bandwidth_Bps) -> float:
    """Two peers swap n bytes; on a full-duplex link both directions run at once."""
    n = _size(size_bytes)
    return _latency(latency_s) + n / _bandwidth(bandwidth_Bps)


# --------------------------------------------------------------------------------------
# nccl-tests definitions (github.com/NVIDIA/nccl-tests doc/PERFORMANCE.md)


def algbw_Bps(size_bytes, time_s) -> float:
    """Algorithm bandwidth: size / time."""
    return _size(size_bytes) / require_number("time_s", time_s, minimum=0.0,
                                              exclusive_minimum=True)


def busbw_Bps(collective: str, size_bytes, time_s, ranks) -> float:
    """Bus bandwidth: algbw times the collective's factor, comparable to link speed."""
    require_choice("collective", collective, BUSBW_FACTORS)
    p = _ranks(ranks)
    return algbw_Bps(size_bytes, time_s) * BUSBW_FACTORS[collective](p)


# --------------------------------------------------------------------------------------
# NCCL model on a cluster
#
# Two questions, two models. *Which* (algorithm, protocol) pair runs is NCCL's decision,
# made with NCCL's own performance model (tuning.cc): the pair of least predicted time.
# *How long* that pair takes is the achieved-time model, whose constants are fitted to
# published nccl-tests runs (benchmarks/collectives_fit.py). NCCL's predictions are
# good enough to rank pairs but not to time them: its NVLS latency is 25 us, while NVLS
# all-reduce on 8 H100 takes 40-130 us of pipeline fill depending on the chunk size; it
# credits LL128 on 8 A100 with 0.92 of the link, while 16 MB reaches 109 GB/s of 300.


@dataclass(frozen=True)
class NcclGraph:
    """What NCCL's topology search finds and its tuning model multiplies: the channels
    of the ring/tree graphs and their total bus bandwidth (NCCL's view, GB/s)."""

    channels: int
    bus_GBps: float
    nvls_channels: int

    @property
    def channel_GBps(self) -> float:
        return self.bus_GBps / self.channels


#: (algorithm, protocol) pairs NCCL has kernels for, per collective, in NCCL's own order
#: (the first of equally fast pairs wins its tuner).
_PAIRS = {
    "allreduce": (("tree", "ll"), ("tree", "ll128"), ("tree", "simple"), ("ring", "ll"),
                  ("ring", "ll128"), ("ring", "simple"), ("nvls", "simple"),
                  ("nvls_tree", "simple")),
    "reduce_scatter": (("ring", "ll"), ("ring", "ll128"), ("ring", "simple"),
                       ("nvls", "simple")),
    "all_gather": (("ring", "ll"), ("ring", "ll128"), ("ring", "simple"), ("nvls", "simple")),
    "broadcast": (("ring", "ll"), ("ring", "ll128"), ("ring", "simple")),
}
COLLECTIVES = tuple(_PAIRS)


@cache
def _toml() -> dict[str, Any]:
    return read_toml(data_dir() / "hardware" / "collectives.toml")


def _constants() -> dict[str, Any]:
    return _toml()["nccl"]


def achieved_constants() -> dict[str, Any]:
    """The fitted achieved-time constants of ``collectives.toml``, by intra-node link."""
    return _toml().get("achieved", {})


def _hw_class(link: LinkSpec) -> str:
    return _HW_CLASS[link.transport]


def _arch(cluster: ClusterSpec) -> str:
    return cluster.gpu.architecture


def _by_arch(table: dict[str, Any], arch: str, default: Any = None) -> Any:
    return table.get(arch, table.get("default", default))


def _node_index(nodes: int) -> int:
    # NCCL's [1 node, 2 nodes, 3 or more] columns.
    return min(nodes, 3) - 1


def _nvls_hardware(cluster: ClusterSpec) -> bool:
    consts = _constants()["nvls"]
    return (cluster.gpus_per_node >= 2 and cluster.intra_link.id in consts["links"]
            and _arch(cluster) in consts["efficiency"])


def nccl_graph(cluster: ClusterSpec) -> NcclGraph:
    """NCCL's ring/tree graph on this cluster, as its search (search.cc) builds it: try
    the per-channel speeds of the GPU generation's speed array, highest first, and keep
    the largest total ``channels x speed`` that fits each GPU's NVLink bandwidth (NCCL's
    per-link figure) and, across nodes, the NICs (a channel enters and leaves a node once,
    through one NIC). The channels are then spread over the graph's channel count."""
    consts = _constants()["graph"]
    arch = _arch(cluster)
    link = cluster.intra_link
    intra_GBps = link.bandwidth_Bps / 1e9
    if link.transport == "nvlink":
        intra_GBps *= _by_arch(consts["nvlink_fraction"], arch, 0.8)
    max_channels = int(consts["channels"])
    speeds = _by_arch(consts["speed_intra_GBps" if cluster.nodes == 1 else "speed_inter_GBps"],
                      arch)
    best = 0.0
    for speed in speeds:
        channels = min(max_channels, math.floor(intra_GBps / speed))
        if cluster.nodes > 1:
            nic_GBps = cluster.inter_link.bandwidth_Bps / 1e9
            channels = min(channels, cluster.nics_per_node * math.floor(nic_GBps / speed))
        best = max(best, channels * speed)
    if best <= 0.0:
        # Slower than the slowest speed NCCL tries: one channel at what the link gives.
        best = min(intra_GBps, cluster.node_bandwidth_Bps / 1e9) if cluster.nodes > 1 \
            else intra_GBps
    return NcclGraph(channels=max_channels, bus_GBps=best,
                     nvls_channels=int(_constants()["nvls"]["channels"]))


def _ll128_enabled(cluster: ClusterSpec) -> bool:
    # NCCL turns LL128 on only where its 128-byte stores are atomic end to end: NVLink
    # inside the node and, across nodes, GPUDirect RDMA.
    if cluster.intra_link.transport != "nvlink":
        return False
    return cluster.nodes == 1 or cluster.inter_link.transport == "rdma"


def _nsteps(collective: str, p: int) -> int:
    if collective == "allreduce":
        return 2 * (p - 1)
    if collective in ("reduce_scatter", "all_gather"):
        return p - 1
    return p


def _available_pairs(collective: str, cluster: ClusterSpec) -> tuple[tuple[str, str], ...]:
    pairs = []
    for algorithm, protocol in _PAIRS[collective]:
        if protocol == "ll128" and not _ll128_enabled(cluster):
            continue
        if algorithm == "nvls" and (cluster.nodes > 1 or not _nvls_hardware(cluster)):
            continue
        if algorithm == "nvls_tree" and (cluster.nodes == 1 or not _nvls_hardware(cluster)):
            continue
        pairs.append((algorithm, protocol))
    return tuple(pairs)


def _tuner_bandwidth_GBps(collective: str, algorithm: str, protocol: str,
                          cluster: ClusterSpec, graph: NcclGraph) -> float:
    """comm->bandwidths[coll][algo][proto] of ncclTopoTuneModel: algorithm bandwidth."""
    consts = _constants()
    arch = _arch(cluster)
    nodes, p = cluster.nodes, cluster.world_size
    column = _node_index(nodes)
    caps = consts["per_channel_max_busbw_GBps"]
    factors = consts["protocol_factor"]
    if nodes == 1:
        ll_max = consts["ll_max_busbw_GBps"]["one_node"].get(arch, math.inf)
    else:
        ll_max = consts["ll_max_busbw_GBps"]["multi_node"][min(nodes, 3) - 2]
    bus = graph.bus_GBps
    channels = graph.channels
    if algorithm in ("nvls", "nvls_tree"):
        channels = graph.nvls_channels
        per_channel = graph.channel_GBps
        efficiency = consts["nvls"]["efficiency"][arch]
        ppn = cluster.gpus_per_node
        intra = per_channel * efficiency * (channels - 1) / channels
        intra *= 2.0 if collective == "allreduce" else (ppn - 1) / ppn
        inter = per_channel * (2.0 if algorithm == "nvls_tree" and nodes <= 2 else 1.0)
        bw = min(intra, inter)
        if algorithm == "nvls_tree":
            bw = min(bw, caps["nvls_tree"][arch][column])
        bus = channels * bw
    elif algorithm == "ring":
        if protocol == "ll":
            bus = min(ll_max, bus * factors["ring"]["ll"])
        elif protocol == "ll128":
            bus = min(bus * factors["ring"]["ll128"],
                      channels * _by_arch(caps["ring_ll128"], arch, [math.inf] * 3)[column])
    else:  # tree, all-reduce only
        bus = min(bus * factors["tree"]["simple"],
                  channels * _by_arch(caps["tree"], arch, [math.inf] * 3)[column])
        if protocol == "ll":
            bus = min(bus / 3.8, ll_max)
        elif protocol == "ll128":
            share = 7.0 / 9.0 if nodes == 1 else 120.0 / 128.0
            bus = min(bus * share,
                      channels * _by_arch(caps["tree_ll128"], arch, [math.inf] * 3)[column])
    if algorithm != "ring" and collective in ("reduce_scatter", "all_gather"):
        return bus
    ratio = 0.5 if algorithm == "tree" else p / _nsteps(collective, p)
    return bus * ratio


def _log2i(value: float) -> int:
    value = int(value)
    return value.bit_length() - 1 if value > 0 else 0


def _tuner_latency_us(collective: str, algorithm: str, protocol: str,
                      cluster: ClusterSpec) -> float:
    """comm->latencies[coll][algo][proto] of ncclTopoTuneModel, microseconds."""
    consts = _constants()
    nodes, p = cluster.nodes, cluster.world_size
    ppn = cluster.gpus_per_node
    base = consts["base_latency_us"][algorithm][protocol]
    intra = consts["hw_latency_us"][_hw_class(cluster.intra_link)][algorithm][protocol]
    # Without a peer on its own node a rank cannot hide the network: tree's net latency.
    net_algorithm = "tree" if ppn == 1 else algorithm
    inter = consts["hw_latency_us"]["net"][net_algorithm][protocol]
    if algorithm == "ring":
        if collective == "broadcast":
            hw = "net" if nodes > 1 else _hw_class(cluster.intra_link)
            return base + consts["hw_latency_us"][hw]["ring"][protocol]
        if nodes > 1:
            intra = max(intra, consts["net_overhead_us"][protocol])
        steps = _nsteps(collective, p)
        inter_steps = 0 if nodes == 1 else (2 * (nodes - 1) if collective == "allreduce"
                                            else nodes - 1)
        return base + (steps - inter_steps) * intra + inter_steps * inter
    if algorithm == "tree":
        return base + 2 * ((ppn - 1) * intra + _log2i(nodes) * inter)
    if algorithm == "nvls":
        return intra + (inter if nodes > 1 else 0.0)
    return base + intra + 2 * _log2i(nodes) * inter


def nccl_tuner_times_s(collective: str, size_bytes, cluster: ClusterSpec
                       ) -> dict[tuple[str, str], float]:
    """NCCL's own predicted time of every (algorithm, protocol) pair it would consider
    for this collective on this cluster (ncclTopoGetAlgoTime): latency + bytes / algbw,
    with the tree correction factors and the multi-node ring plateau. NCCL runs the pair
    of least predicted time; these are not the times it achieves."""
    require_choice("collective", collective, COLLECTIVES)
    n = _size(size_bytes)
    if cluster.world_size == 1:
        return {("ring", "simple"): 0.0}
    graph = nccl_graph(cluster)
    consts = _constants()
    times = {}
    for algorithm, protocol in _available_pairs(collective, cluster):
        bw = _tuner_bandwidth_GBps(collective, algorithm, protocol, cluster, graph)
        latency = _tuner_latency_us(collective, algorithm, protocol, cluster)
        if algorithm == "tree" and collective == "allreduce":
            table = consts["tree_correction_factor"][protocol]
            index = _log2i(int(n) >> 6)
            if index < len(table):
                bw *= table[index]
        if (algorithm, protocol) == ("ring", "simple") and cluster.nodes > 1 \
                and collective == "allreduce" and n / (graph.channels * cluster.world_size) >= 64:
            latency *= _by_arch(consts["ring_plateau_factor"], _arch(cluster))
        times[algorithm, protocol] = (latency + n / (1000.0 * bw)) * 1e-6
    return times


def nccl_selection(collective: str, size_bytes, cluster: ClusterSpec,
                   algorithm: str = "auto") -> tuple[str, str]:
    """The (algorithm, protocol) NCCL runs: least predicted time, among the given
    algorithm's protocols when one is forced (``NCCL_ALGO``)."""
    times = nccl_tuner_times_s(collective, size_bytes, cluster)
    if algorithm != "auto":
        supported = sorted({name for name, _ in times})
        if algorithm not in supported:
            raise ConfigError("algorithm", algorithm, f"one of auto, {', '.join(supported)} "
                              f"(what NCCL runs for {collective} on this cluster)",
                              nearest(algorithm, supported))
        times = {pair: t for pair, t in times.items() if pair[0] == algorithm}
    # Ties go to the first pair in NCCL's own order (tree, ring, ..., nvls).
    return min(times, key=times.__getitem__)


# ---------------------------------------------------------------- achieved times


def _inter_node_bandwidth_Bps(cluster: ClusterSpec) -> float:
    return cluster.bisection_node_bandwidth_Bps


def _ring_bus_bandwidth_Bps(cluster: ClusterSpec) -> float:
    """A ring enters and leaves each node once per channel; with one channel per NIC the
    node's NICs carry the same bytes as each GPU's link: the slower of the two bounds."""
    intra = cluster.intra_link.achievable_bandwidth_Bps
    if cluster.nodes == 1:
        return intra
    return min(intra, _inter_node_bandwidth_Bps(cluster))


def _ll_cap_Bps(cluster: ClusterSpec) -> float:
    consts = _constants()["ll_max_busbw_GBps"]
    if cluster.nodes == 1:
        return consts["one_node"].get(_arch(cluster), math.inf) * 1e9
    return consts["multi_node"][min(cluster.nodes, 3) - 2] * 1e9


def _nvls_vector_bandwidth_Bps(cluster: ClusterSpec, efficiency: float,
                               link_Bps: float | None = None) -> float:
    """NVLS all-reduce moves, per GPU, n + n/p out and n/p + n in through the switch
    (multimem.ld_reduce of its n/p shard from all p GPUs, multimem.st of the sum to all):
    the vector bandwidth is p/(p+1) of what its link sustains."""
    g = cluster.gpus_per_node
    if link_Bps is None:
        link_Bps = cluster.intra_link.achievable_bandwidth_Bps
    return efficiency * link_Bps * g / (g + 1)


def _prior_time_s(collective: str, algorithm: str, protocol: str, n: float,
                  cluster: ClusterSpec) -> float:
    """Achieved time without fitted constants: NCCL's latencies with the bandwidth of the
    cluster's bottleneck link (not NCCL's graph figure) and NCCL's protocol factors."""
    consts = _constants()
    p = cluster.world_size
    latency = _tuner_latency_us(collective, algorithm, protocol, cluster) * 1e-6
    if cluster.nodes > 1 and algorithm in ("ring", "tree"):
        # The network's own small-message latency on every inter-node hop.
        if algorithm == "ring":
            hops = (cluster.nodes - 1) * (2 if collective == "allreduce" else 1)
        else:
            hops = 2 * _log2i(cluster.nodes)
        latency += hops * cluster.inter_link.latency_s
    if algorithm in ("nvls", "nvls_tree"):
        efficiency = consts["nvls"]["efficiency"][_arch(cluster)]
        bandwidth = _nvls_vector_bandwidth_Bps(cluster, efficiency)
        if collective != "allreduce":
            # Reduce-scatter or all-gather alone: n out and n/p in, or the reverse.
            bandwidth = efficiency * cluster.intra_link.achievable_bandwidth_Bps
        if algorithm == "nvls_tree":
            bandwidth = min(bandwidth, _nvls_tree_network_Bps(cluster))
        return latency + n / bandwidth
    bus = _ring_bus_bandwidth_Bps(cluster)
    if algorithm == "ring":
        bus *= consts["protocol_factor"]["ring"][protocol]
        if protocol == "ll":
            bus = min(bus, _ll_cap_Bps(cluster))
        if collective == "broadcast":
            return latency + n / bus
        return latency + BUSBW_FACTORS[collective](p) * n / bus
    key = "ll128_one_node" if protocol == "ll128" and cluster.nodes == 1 else protocol
    bus *= consts["protocol_factor"]["tree"][key]
    if protocol == "ll":
        bus = min(bus, _ll_cap_Bps(cluster))
    return latency + 2 * n / bus


def _nvls_tree_network_Bps(cluster: ClusterSpec) -> float:
    """Vector bandwidth the network allows an NVLS tree: after the in-node reduction each
    GPU owns 1/g of the vector and trades it over its NIC; two nodes swap once, more nodes
    send up and down a tree, twice the bytes."""
    node = _inter_node_bandwidth_Bps(cluster)
    return node if cluster.nodes == 2 else node / 2


def nvls_chunk_bytes(size_bytes, cluster: ClusterSpec) -> int:
    """NCCL's NVLS chunk for an all-reduce of this size (enqueue.cc)."""
    consts = _constants()
    chunk = int(consts["nvls_chunk"]["max_bytes"])
    concurrent = int(consts["nvls"]["channels"]) * cluster.gpus_per_node
    for factor, smaller in consts["nvls_chunk"]["rules"]:
        if size_bytes < factor * concurrent * chunk and chunk > smaller:
            chunk = int(smaller)
    return chunk


def _fitted(cluster: ClusterSpec, algorithm: str, protocol: str,
            constants: dict[str, Any] | None) -> dict[str, float] | None:
    table = (achieved_constants() if constants is None else constants).get(
        cluster.intra_link.id, {})
    if algorithm == "ring" and cluster.nodes == 1:
        return table.get(f"ring_{protocol}")
    if algorithm == "nvls" and cluster.nodes == 1:
        return table.get("nvls")
    if algorithm == "nvls_tree":
        per_net = table.get("nvls_tree", {})
        found = per_net.get(cluster.inter_link.id)
        if found is not None and "nvls" in table:
            return {**found, **{f"nvls_{k}": v for k, v in table["nvls"].items()}}
    return None


def achieved_time_s(collective: str, pair: tuple[str, str], size_bytes, cluster: ClusterSpec,
                    constants: dict[str, Any] | None = None) -> float:
    """How long an (algorithm, protocol) pair takes on the cluster: the fitted model of
    ``collectives.toml [achieved]`` where the hardware has one (``constants`` replaces
    that table, for fitting), NCCL's latencies over the physical links otherwise."""
    require_choice("collective", collective, COLLECTIVES)
    n = _size(size_bytes)
    p = cluster.world_size
    if p == 1:
        return 0.0
    algorithm, protocol = pair
    if pair not in _available_pairs(collective, cluster):
        raise ConfigError("pair", pair, "an (algorithm, protocol) pair NCCL runs for "
                          f"{collective} on this cluster: {_available_pairs(collective, cluster)}")
    fit = _fitted(cluster, algorithm, protocol, constants) if collective == "allreduce" \
        else None
    if fit is None:
        return _prior_time_s(collective, algorithm, protocol, n, cluster)
    # Fitted bandwidths are fractions of the link's nominal bandwidth, so they do not move
    # with the catalog's bulk-transfer efficiency.
    link = cluster.intra_link.bandwidth_Bps
    if algorithm == "ring":
        threads = _constants()["threads"]
        saturation = (nccl_graph(cluster).channels * threads[f"{protocol}_threads"]
                      * threads[f"{protocol}_threshold_bytes"] * p)
        bus = fit["bus_efficiency"] * link
        return fit["latency_us"] * 1e-6 + BUSBW_FACTORS["allreduce"](p) * max(n, saturation) / bus
    if algorithm == "nvls":
        return _nvls_pipeline_time_s(n, cluster, fit)
    # The fitted efficiency is what joining the nodes costs the in-node NVLS stream; the
    # network term already carries its links' own efficiency.
    nvls = {k.removeprefix("nvls_"): v for k, v in fit.items() if k.startswith("nvls_")}
    bandwidth = min(fit["efficiency"] * _nvls_vector_bandwidth_Bps(cluster, nvls["efficiency"],
                                                                   link),
                    _nvls_tree_network_Bps(cluster))
    return fit["latency_us"] * 1e-6 + n / bandwidth


def _nvls_pipeline_time_s(n: float, cluster: ClusterSpec, fit: dict[str, float]) -> float:
    window = (int(_constants()["nvls"]["channels"]) * cluster.gpus_per_node
              * nvls_chunk_bytes(n, cluster))
    bandwidth = _nvls_vector_bandwidth_Bps(cluster, fit["efficiency"],
                                           cluster.intra_link.bandwidth_Bps)
    step = window / bandwidth + fit["step_overhead_us"] * 1e-6
    return fit["launch_us"] * 1e-6 + (n / window + fit["pipeline_depth"]) * step


def nccl_candidate_times_s(collective: str, size_bytes, cluster: ClusterSpec
                           ) -> dict[tuple[str, str], float]:
    """Achieved time of every (algorithm, protocol) pair NCCL considers for this
    collective on this cluster. NCCL does not necessarily run the fastest of them: see
    :func:`nccl_selection`."""
    require_choice("collective", collective, COLLECTIVES)
    n = _size(size_bytes)
    if cluster.world_size == 1:
        return {("ring", "simple"): 0.0}
    return {pair: achieved_time_s(collective, pair, n, cluster)
            for pair in _available_pairs(collective, cluster)}


def _nccl_time_s(collective: str, size_bytes, cluster: ClusterSpec, algorithm: str) -> float:
    n = _size(size_bytes)
    if cluster.world_size == 1:
        return 0.0
    pair = nccl_selection(collective, n, cluster, algorithm)
    return achieved_time_s(collective, pair, n, cluster)


def allreduce_time_s(size_bytes, cluster: ClusterSpec, algorithm: str = "auto") -> float:
    """All-reduce time on the cluster. auto: the pair NCCL's tuner picks, timed by the
    achieved-time model; ring, tree, nvls, nvls_tree: that algorithm with the protocol
    NCCL's tuner picks for it (``NCCL_ALGO``). recursive_halving_doubling and
    hierarchical: alpha-beta costs with the links' own latency and achievable bandwidth
    (MPI / Horovod style)."""
    require_choice("algorithm", algorithm, ALLREDUCE_ALGORITHMS)
    n = _size(size_bytes)
    if algorithm in ("auto", *NCCL_ALGORITHMS):
        return _nccl_time_s("allreduce", n, cluster, algorithm)
    intra = cluster.intra_link
    if algorithm == "hierarchical":
        if cluster.nodes == 1:
            return ring_allreduce_time_s(n, cluster.gpus_per_node, intra.latency_s,
                                         intra.achievable_bandwidth_Bps)
        return hierarchical_allreduce_time_s(
            n, cluster.gpus_per_node, cluster.nodes, intra.latency_s,
            intra.achievable_bandwidth_Bps, cluster.inter_link.latency_s,
            _inter_node_bandwidth_Bps(cluster))
    link = intra if cluster.nodes == 1 else cluster.inter_link
    return recursive_halving_doubling_allreduce_time_s(
        n, cluster.world_size, link.latency_s, _per_gpu_bandwidth_Bps(cluster))


def _per_gpu_bandwidth_Bps(cluster: ClusterSpec) -> float:
    """What one GPU gets when all GPUs talk across the network at once."""
    if cluster.nodes == 1:
        return cluster.intra_link.achievable_bandwidth_Bps
    return min(cluster.intra_link.achievable_bandwidth_Bps,
               _inter_node_bandwidth_Bps(cluster) / cluster.gpus_per_node)


def predict_allreduce_busbw_Bps(size_bytes, cluster: ClusterSpec, algorithm: str = "auto"
                                ) -> float:
    """nccl-tests all_reduce_perf bus bandwidth this model predicts (validation entry)."""
    n = require_number("size_bytes", size_bytes, minimum=0.0, exclusive_minimum=True)
    if cluster.world_size == 1:
        raise ConfigError("cluster.world_size", 1, "at least 2 ranks (bus bandwidth of one "
                          "rank is undefined)")
    return busbw_Bps("allreduce", n, allreduce_time_s(n, cluster, algorithm),
                     cluster.world_size)


def reduce_scatter_time_s(size_bytes, cluster: ClusterSpec, algorithm: str = "auto") -> float:
    """NCCL reduce-scatter of an n-byte vector (ring, or NVLS where present)."""
    require_choice("algorithm", algorithm, ("auto", "ring", "nvls"))
    return _nccl_time_s("reduce_scatter", size_bytes, cluster, algorithm)


def all_gather_time_s(size_bytes, cluster: ClusterSpec, algorithm: str = "auto") -> float:
    """NCCL all-gather into an n-byte vector (ring, or NVLS where present)."""
    require_choice("algorithm", algorithm, ("auto", "ring", "nvls"))
    return _nccl_time_s("all_gather", size_bytes, cluster, algorithm)


def broadcast_time_s(size_bytes, cluster: ClusterSpec) -> float:
    """NCCL broadcast of n bytes from one rank: a pipelined ring (chain)."""
    return _nccl_time_s("broadcast", size_bytes, cluster, "auto")


def _ps_time_s(size_bytes, cluster: ClusterSpec, servers, workers, dedicated_servers) -> float:
    n = _size(size_bytes)
    s = _ranks(servers, "servers")
    w = cluster.world_size if workers is None else _ranks(workers, "workers")
    if w > cluster.world_size:
        raise ConfigError("workers", w, f"at most the cluster's {cluster.world_size} GPUs")
    if not isinstance(dedicated_servers, bool):
        raise ConfigError("dedicated_servers", dedicated_servers, "True or False")
    g = min(cluster.gpus_per_node, w)
    worker_nodes = math.ceil(w / cluster.gpus_per_node)
    if dedicated_servers:
        if cluster.inter_link is None:
            raise ConfigError("cluster.inter_link", None,
                              "a network link (dedicated servers sit on their own nodes)")
        # One server per dedicated node with the cluster's NICs; the g workers of a node
        # share its NICs.
        node_bw = cluster.node_bandwidth_Bps
        return parameter_server_time_s(n, w, s, cluster.inter_link.latency_s,
                                       node_bw / g, node_bw)
    if worker_nodes == 1:
        # Servers on the workers' own GPUs within one node: a worker's link carries its
        # push except the shard its own GPU hosts; a hosting GPU receives every other
        # worker's shard.
        if s > w:
            raise ConfigError("servers", s, f"at most the {w} workers they are colocated with")
        link = cluster.intra_link
        out_bytes = n if s < w else n * (s - 1) / s
        in_bytes = (w - 1) * n / s
        return link.latency_s + max(out_bytes, in_bytes) / link.achievable_bandwidth_Bps
    # Servers spread evenly over the worker nodes; a shard hosted on a worker's own node
    # never crosses the network.
    fewest, most = s // worker_nodes, math.ceil(s / worker_nodes)
    out_bytes = g * n * (1 - fewest / s)
    in_bytes = most * (w - g) * n / s
    return (cluster.inter_link.latency_s
            + max(out_bytes, in_bytes) / _inter_node_bandwidth_Bps(cluster))


def ps_push_time_s(size_bytes, cluster: ClusterSpec, servers, workers=None,
                   dedicated_servers: bool = False) -> float:
    """All workers push n bytes of gradients sharded over ``servers`` parameter servers:
    each worker sends n/S to each server, so a worker NIC sends n and a server NIC
    receives W * n/S; full-duplex NICs, the slower side sets the time. Workers on one node
    share its NICs. Colocated servers live on the worker GPUs (spread over the nodes);
    dedicated ones each get a node of their own with the cluster's NICs."""
    return _ps_time_s(size_bytes, cluster, servers, workers, dedicated_servers)


def ps_pull_time_s(size_bytes, cluster: ClusterSpec, servers, workers=None,
                   dedicated_servers: bool = False) -> float:
    """All workers pull n bytes of parameters: the push traffic reversed, same time."""
    return _ps_time_s(size_bytes, cluster, servers, workers, dedicated_servers)


def gossip_exchange_time_s(size_bytes, cluster: ClusterSpec) -> float:
    """Two workers swap n-byte models (both send n, full duplex). Within one node over
    the GPU's own link; across nodes with every GPU of a node exchanging at the same
    time, so each gets its share of the node's NICs."""
    n = _size(size_bytes)
    link = cluster.intra_link if cluster.nodes == 1 else cluster.inter_link
    return pair_exchange_time_s(n, link.latency_s, _per_gpu_bandwidth_Bps(cluster))
