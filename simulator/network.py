"""Links as shared resources: flows with max-min fair bandwidth shares.

A flow crosses a route of links. It first waits out its latency, then moves its bytes at
its share of the bandwidth; shares are recomputed whenever a flow starts or ends
(fluid model, progressive filling: every unfrozen flow grows at the same pace until a
link is full; the flows through that link are frozen at their rate; repeat). The
result is the max-min fair allocation (Bertsekas and Gallager, Data Networks, 6.5.2).

The filling is vectorised over all active flows with numpy, a few passes per
recomputation (one per distinct bottleneck level). Flows that start at the same instant
are added together and shares computed once for them: an arrival schedules one
zero-delay recomputation, which the other arrivals of that instant join.

:class:`ClusterNetwork` builds the links of a :class:`~models.hardware.ClusterSpec`:
each node's NICs (all of them together, one capacity per direction), each GPU's
intra-node link (per direction) and, on a fat tree spanning leaf switches, each leaf's
uplinks. Dedicated server nodes get NICs like the others.

Simultaneous completions fire in the order their flows were started.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import simpy

from models.errors import ConfigError, require_int, require_number
from models.hardware import ClusterSpec

#: A flow whose remaining transfer time is below this fraction of the clock counts as
#: done: floating-point residue of ``remaining - rate * dt`` must not schedule wakeups
#: closer together than the clock can tell apart.
_TIME_TOLERANCE = 4e-12


class Network:
    """Links (capacities in bytes/s per direction) and the flows crossing them."""

    def __init__(self, env: simpy.Environment, max_hops: int = 4):
        self.env = env
        self._max_hops = require_int("max_hops", max_hops, minimum=1)
        self._names: list[str] = []
        self._capacity = np.zeros(0)
        slots = 64
        self._route = np.full((slots, self._max_hops), -1, dtype=np.int64)
        self._remaining = np.zeros(slots)
        self._size = np.zeros(slots)
        self._rate = np.zeros(slots)
        self._active = np.zeros(slots, dtype=bool)
        self._sequence = np.zeros(slots, dtype=np.int64)
        self._events: list[simpy.Event | None] = [None] * slots
        self._free: list[int] = list(range(slots - 1, -1, -1))
        self._next_sequence = 0
        self._updated_s = 0.0
        self._generation = 0
        self._dirty = False
        self._recompute_pending = False
        #: Rate recomputations so far (a cost figure for benchmarks).
        self.recomputations = 0

    # ----------------------------------------------------------------------------------
    # links

    def add_link(self, name: str, capacity_Bps: float) -> int:
        require_number(f"link {name}.capacity_Bps", capacity_Bps, minimum=0.0,
                       exclusive_minimum=True)
        self._names.append(name)
        self._capacity = np.append(self._capacity, float(capacity_Bps))
        return len(self._names) - 1

    def link_name(self, index: int) -> str:
        return self._names[index]

    @property
    def links(self) -> int:
        return len(self._names)

    # ----------------------------------------------------------------------------------
    # flows

    def transfer(self, route: Sequence[int], size_bytes: float, latency_s: float = 0.0
                 ) -> simpy.Event:
        """Start a flow now; the event succeeds when its last byte has arrived."""
        require_number("size_bytes", size_bytes, minimum=0.0)
        require_number("latency_s", latency_s, minimum=0.0)
        if len(route) > self._max_hops:
            raise ConfigError("route", list(route), f"at most {self._max_hops} links")
        for link in route:
            if not 0 <= link < len(self._names):
                raise ConfigError("route", list(route), f"link indices in 0..{self.links - 1}")
        done = self.env.event()
        if size_bytes == 0 or not route:
            # Nothing to share: only the latency (a route of no links is a local copy).
            if latency_s > 0:
                self.env.timeout(latency_s).callbacks.append(lambda _: done.succeed())
            else:
                done.succeed()
            return done
        slot = self._take_slot()
        self._route[slot] = -1
        self._route[slot, :len(route)] = route
        self._size[slot] = size_bytes
        self._remaining[slot] = size_bytes
        self._rate[slot] = 0.0
        self._sequence[slot] = self._next_sequence
        self._next_sequence += 1
        self._events[slot] = done
        if latency_s > 0:
            self.env.timeout(latency_s).callbacks.append(lambda _: self._arrive(slot))
        else:
            self._arrive(slot)
        return done

    def active_rates(self) -> dict[int, float]:
        """Current rate (bytes/s) of every flow moving bytes, by start order."""
        slots = np.flatnonzero(self._active)
        return {int(self._sequence[s]): float(self._rate[s]) for s in slots}

    # ----------------------------------------------------------------------------------
    # internals

    def _take_slot(self) -> int:
        if not self._free:
            old = len(self._events)
            new = 2 * old
            self._route = np.vstack([self._route,
                                     np.full((old, self._max_hops), -1, dtype=np.int64)])
            for name in ("_remaining", "_size", "_rate", "_sequence"):
                array = getattr(self, name)
                setattr(self, name, np.concatenate([array, np.zeros(old, dtype=array.dtype)]))
            self._active = np.concatenate([self._active, np.zeros(old, dtype=bool)])
            self._events.extend([None] * old)
            self._free = list(range(new - 1, old - 1, -1))
        return self._free.pop()

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._updated_s
        if elapsed > 0:
            active = self._active
            self._remaining[active] -= self._rate[active] * elapsed
        self._updated_s = now

    def _arrive(self, slot: int) -> None:
        self._advance()
        self._active[slot] = True
        self._dirty = True
        if not self._recompute_pending:
            self._recompute_pending = True
            self.env.timeout(0).callbacks.append(self._deferred_recompute)

    def _deferred_recompute(self, _event) -> None:
        self._recompute_pending = False
        if self._dirty:
            self._advance()
            self._reallocate()

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._advance()
        active = np.flatnonzero(self._active)
        horizon = _TIME_TOLERANCE * max(1.0, self.env.now)
        finished = active[self._remaining[active]
                          <= self._rate[active] * horizon + 1e-12 * self._size[active]]
        finished = finished[np.argsort(self._sequence[finished], kind="stable")]
        self._active[finished] = False
        self._rate[finished] = 0.0
        events = [self._events[s] for s in finished]
        for slot in finished:
            self._events[slot] = None
            self._free.append(int(slot))
        self._reallocate()
        for event in events:
            event.succeed()

    def _reallocate(self) -> None:
        self._dirty = False
        self._generation += 1
        self.recomputations += 1
        active = np.flatnonzero(self._active)
        if active.size == 0:
            return
        rates = max_min_rates(self._route[active], self._capacity)
        self._rate[active] = rates
        remaining = self._remaining[active]
        next_s = max(float(np.min(remaining / rates)), 0.0)
        generation = self._generation
        self.env.timeout(next_s).callbacks.append(lambda _: self._wake(generation))


def max_min_rates(routes: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates of flows (rows of link indices, -1 padded) by progressive
    filling over links of the given capacities."""
    flows = routes.shape[0]
    links = capacity.shape[0]
    rates = np.zeros(flows)
    left = capacity.astype(float).copy()
    open_flows = np.arange(flows)
    open_routes = routes
    while open_flows.size:
        valid = open_routes >= 0
        counts = np.bincount(open_routes[valid], minlength=links)
        used = counts > 0
        share = np.full(links, math.inf)
        share[used] = np.maximum(left[used], 0.0) / counts[used]
        level = float(share.min())
        bottleneck = share <= level * (1 + 1e-12)
        # Index -1 (padding) reads the last link; mask it out with ``valid``.
        hit = (bottleneck[open_routes] & valid).any(axis=1)
        rates[open_flows[hit]] = level
        frozen = open_routes[hit]
        left -= level * np.bincount(frozen[frozen >= 0], minlength=links)
        open_flows = open_flows[~hit]
        open_routes = open_routes[~hit]
    return rates


class ClusterNetwork:
    """The links of a cluster, and routes between its GPUs and server nodes.

    Endpoints are ``(node, gpu)`` pairs; ``gpu`` is ``None`` for a dedicated server
    node (nodes ``cluster.nodes`` onwards). Within a node a flow crosses the sending
    GPU's link out and the receiving GPU's link in; between nodes, the sending node's
    NICs out and the receiving node's NICs in (and the leaf uplinks on a fat tree when
    the nodes sit under different leaves), with the inter-node link's latency.
    """

    def __init__(self, env: simpy.Environment, cluster: ClusterSpec, extra_nodes: int = 0):
        require_int("extra_nodes", extra_nodes, minimum=0)
        self.env = env
        self.cluster = cluster
        self.network = Network(env, max_hops=4)
        self.total_nodes = cluster.nodes + extra_nodes
        g = cluster.gpus_per_node
        intra = cluster.intra_link.achievable_bandwidth_Bps
        self._gpu_out = [self.network.add_link(f"gpu{w}.out", intra)
                         for w in range(cluster.world_size)]
        self._gpu_in = [self.network.add_link(f"gpu{w}.in", intra)
                        for w in range(cluster.world_size)]
        self._nic_out: list[int] = []
        self._nic_in: list[int] = []
        self._leaf_up: list[int] = []
        self._leaf_down: list[int] = []
        if self.total_nodes > 1:
            if cluster.inter_link is None:
                raise ConfigError("cluster.inter_link", None,
                                  "a network link (flows cross nodes)")
            node_bw = cluster.node_bandwidth_Bps
            self._nic_out = [self.network.add_link(f"node{n}.nic.out", node_bw)
                             for n in range(self.total_nodes)]
            self._nic_in = [self.network.add_link(f"node{n}.nic.in", node_bw)
                            for n in range(self.total_nodes)]
            if cluster.topology == "fat-tree":
                leaves = math.ceil(self.total_nodes / cluster.nodes_per_leaf)
                if leaves > 1:
                    uplink = cluster.nodes_per_leaf * node_bw / cluster.oversubscription
                    self._leaf_up = [self.network.add_link(f"leaf{k}.up", uplink)
                                     for k in range(leaves)]
                    self._leaf_down = [self.network.add_link(f"leaf{k}.down", uplink)
                                       for k in range(leaves)]
        self._gpus_per_node = g

    def worker_endpoint(self, worker: int) -> tuple[int, int]:
        return divmod(worker, self._gpus_per_node)

    def route(self, source: tuple[int, int | None], target: tuple[int, int | None]
              ) -> tuple[tuple[int, ...], float]:
        """(links, latency_s) from one endpoint to another; no links for a local copy."""
        if source == target:
            return (), 0.0
        (src_node, src_gpu), (dst_node, dst_gpu) = source, target
        g = self._gpus_per_node
        if src_node == dst_node:
            if src_gpu is None or dst_gpu is None:
                return (), 0.0
            return ((self._gpu_out[src_node * g + src_gpu], self._gpu_in[dst_node * g + dst_gpu]),
                    self.cluster.intra_link.latency_s)
        links = [self._nic_out[src_node]]
        if self._leaf_up:
            per_leaf = self.cluster.nodes_per_leaf
            src_leaf, dst_leaf = src_node // per_leaf, dst_node // per_leaf
            if src_leaf != dst_leaf:
                links += [self._leaf_up[src_leaf], self._leaf_down[dst_leaf]]
        links.append(self._nic_in[dst_node])
        return tuple(links), self.cluster.inter_link.latency_s

    def transfer(self, source: tuple[int, int | None], target: tuple[int, int | None],
                 size_bytes: float) -> simpy.Event:
        links, latency_s = self.route(source, target)
        return self.network.transfer(links, size_bytes, latency_s)
