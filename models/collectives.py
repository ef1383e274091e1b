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
does on it: for every (algorithm, protocol) pair NCCL would consider on that topology,
``latency + bytes / bandwidth`` with NCCL's own latency tables and protocol factors
(``data/hardware/collectives.toml``, from ``src/graph/tuning.cc``), and with the bandwidth
of the bottleneck link of the cluster: the intra-node link within one node; across nodes,
the node's NICs shared by its GPUs (``ClusterSpec.node_bandwidth_Bps``, or the bisection
share when a fat tree spans leaf switches). ``algorithm="auto"`` is the fastest pair, as
NCCL chooses.

Sizes follow nccl-tests: ``size_bytes`` is the full vector (all-reduce input, all-gather
output, reduce-scatter input, broadcast buffer).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from models.catalog import data_dir, read_toml
from models.errors import ConfigError, require_choice, require_int, require_number
from models.hardware import ClusterSpec, LinkSpec

#: Algorithms of :func:`allreduce_time_s`. ring, tree and nvls are NCCL's; the last two are
#: MPI/Horovod-style compositions that NCCL does not run, so "auto" never picks them.
ALLREDUCE_ALGORITHMS = ("auto", "ring", "tree", "nvls", "recursive_halving_doubling",
                        "hierarchical")
NCCL_ALGORITHMS = ("ring", "tree", "nvls")
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


@cache
def _constants() -> dict[str, Any]:
    return read_toml(data_dir() / "hardware" / "collectives.toml")["nccl"]


def _hw_class(link: LinkSpec) -> str:
    return _HW_CLASS[link.transport]


def _inter_node_bandwidth_Bps(cluster: ClusterSpec) -> float:
    return cluster.bisection_node_bandwidth_Bps


def _ring_bus_bandwidth_Bps(cluster: ClusterSpec) -> float:
    """A ring enters and leaves each node once per channel; with one channel per NIC the
    node's NICs carry the same bytes as each GPU's link: the slower of the two bounds."""
    intra = cluster.intra_link.achievable_bandwidth_Bps
    if cluster.nodes == 1:
        return intra
    return min(intra, _inter_node_bandwidth_Bps(cluster))


def _ll128_enabled(cluster: ClusterSpec) -> bool:
    # NCCL turns LL128 on only where its 128-byte stores are atomic end to end: NVLink
    # inside the node and, across nodes, GPUDirect RDMA.
    if cluster.intra_link.transport != "nvlink":
        return False
    return cluster.nodes == 1 or cluster.inter_link.transport == "rdma"


def _nvls_efficiency(cluster: ClusterSpec) -> float | None:
    if cluster.nodes != 1 or cluster.gpus_per_node < 2:
        return None
    return _constants()["nvls"]["efficiency"].get(cluster.intra_link.id)


def _ll_cap_Bps(cluster: ClusterSpec) -> float:
    caps = _constants()["ll_max_busbw_GBps"].get(cluster.gpu.architecture)
    if caps is None:
        return math.inf
    return caps[min(cluster.nodes, 3) - 1] * 1e9


def _latency_s(algorithm: str, protocol: str, hw: str) -> tuple[float, float]:
    """(base, per-step hardware) latency in seconds from NCCL's tables."""
    consts = _constants()
    base = consts["base_latency_us"][algorithm][protocol]
    step = consts["hw_latency_us"][hw][algorithm][protocol]
    return base * 1e-6, step * 1e-6


def _ring_steps(collective: str, p: int) -> int:
    return 2 * (p - 1) if collective == "allreduce" else p - 1


def _ring_candidate(collective: str, protocol: str, n: float, cluster: ClusterSpec) -> float:
    p = cluster.world_size
    factor = _constants()["bus_bandwidth_factor"]["ring"][protocol]
    bus = _ring_bus_bandwidth_Bps(cluster) * factor
    if protocol == "ll":
        bus = min(bus, _ll_cap_Bps(cluster))
    steps = _ring_steps(collective, p)
    inter_steps = 0 if cluster.nodes == 1 else _ring_steps(collective, cluster.nodes)
    base, intra_step = _latency_s("ring", protocol, _hw_class(cluster.intra_link))
    latency = base + (steps - inter_steps) * intra_step
    if inter_steps:
        _, net_step = _latency_s("ring", protocol, "net")
        latency += inter_steps * (net_step + cluster.inter_link.latency_s)
    return latency + BUSBW_FACTORS[collective](p) * n / bus


def _tree_candidate(protocol: str, n: float, cluster: ClusterSpec) -> float:
    factors = _constants()["bus_bandwidth_factor"]["tree"]
    key = "ll128_one_node" if protocol == "ll128" and cluster.nodes == 1 else protocol
    bus = _ring_bus_bandwidth_Bps(cluster) * factors[key]
    if protocol == "ll":
        bus = min(bus, _ll_cap_Bps(cluster))
    # A chain through the node's GPUs, a double binary tree over the nodes (NCCL >= 2.4).
    base, intra_step = _latency_s("tree", protocol, _hw_class(cluster.intra_link))
    latency = base + 2 * (cluster.gpus_per_node - 1) * intra_step
    if cluster.nodes > 1:
        _, net_step = _latency_s("tree", protocol, "net")
        latency += 2 * _log2_ceil(cluster.nodes) * (net_step + cluster.inter_link.latency_s)
    return latency + 2 * n / bus


def _nvls_candidate(collective: str, n: float, cluster: ClusterSpec, efficiency: float) -> float:
    """NVLink SHARP. All-reduce: GPU r issues multimem.ld_reduce on its n/p shard (the
    switch reads that shard from all p GPUs and returns the sum), then multimem.st (the
    switch writes it to all p GPUs). Per GPU that is n + n/p out and n/p + n in.
    Reduce-scatter and all-gather are one half each: n out and n/p in, or the reverse."""
    p = cluster.world_size
    bus = cluster.intra_link.achievable_bandwidth_Bps * efficiency
    traffic = (1 + 1 / p) * n if collective == "allreduce" else n
    base, step = _latency_s("nvls", "simple", "nvlink")
    return base + step + traffic / bus


def nccl_candidate_times_s(collective: str, size_bytes, cluster: ClusterSpec
                           ) -> dict[tuple[str, str], float]:
    """Predicted time of every (algorithm, protocol) pair NCCL considers for this
    collective on this cluster. Broadcast, reduce-scatter and all-gather run on rings
    (and NVLS for the latter two); tree and NVLS all-reduce where the hardware has them.
    """
    require_choice("collective", collective,
                   ("allreduce", "reduce_scatter", "all_gather", "broadcast"))
    n = _size(size_bytes)
    if cluster.world_size == 1:
        return {("ring", "simple"): 0.0}
    protocols = [p for p in PROTOCOLS if p != "ll128" or _ll128_enabled(cluster)]
    times: dict[tuple[str, str], float] = {}
    for protocol in protocols:
        if collective == "broadcast":
            times["ring", protocol] = _broadcast_candidate(protocol, n, cluster)
        else:
            times["ring", protocol] = _ring_candidate(collective, protocol, n, cluster)
        if collective == "allreduce":
            times["tree", protocol] = _tree_candidate(protocol, n, cluster)
    efficiency = _nvls_efficiency(cluster)
    if efficiency is not None and collective != "broadcast":
        times["nvls", "simple"] = _nvls_candidate(collective, n, cluster, efficiency)
    return times


def _broadcast_candidate(protocol: str, n: float, cluster: ClusterSpec) -> float:
    # A pipelined chain: every link carries the buffer once (bus factor 1), p-1 hops.
    factor = _constants()["bus_bandwidth_factor"]["ring"][protocol]
    bus = _ring_bus_bandwidth_Bps(cluster) * factor
    if protocol == "ll":
        bus = min(bus, _ll_cap_Bps(cluster))
    base, intra_step = _latency_s("ring", protocol, _hw_class(cluster.intra_link))
    latency = base + (cluster.gpus_per_node - 1) * intra_step
    if cluster.nodes > 1:
        _, net_step = _latency_s("ring", protocol, "net")
        latency += (cluster.nodes - 1) * (net_step + cluster.inter_link.latency_s)
    return latency + n / bus


def _nccl_time_s(collective: str, size_bytes, cluster: ClusterSpec, algorithm: str) -> float:
    times = nccl_candidate_times_s(collective, size_bytes, cluster)
    if cluster.world_size == 1:
        return 0.0
    if algorithm == "auto":
        return min(times.values())
    supported = sorted({name for name, _ in times})
    if algorithm not in supported:
        raise ConfigError("algorithm", algorithm, f"one of auto, {', '.join(supported)} "
                          f"(what NCCL runs for {collective} on this cluster)")
    return min(t for (name, _), t in times.items() if name == algorithm)


def allreduce_time_s(size_bytes, cluster: ClusterSpec, algorithm: str = "auto") -> float:
    """All-reduce time on the cluster. ring, tree, nvls: NCCL's model, fastest protocol;
    auto: fastest NCCL pair. recursive_halving_doubling and hierarchical: alpha-beta costs
    with the links' own latency and achievable bandwidth (MPI / Horovod style)."""
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
