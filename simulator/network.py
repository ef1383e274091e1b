"""Links as shared resources: flows with max-min fair bandwidth shares.

A flow crosses a route of links. It first waits out its latency, then moves its bytes at
its share of the bandwidth; shares are recomputed whenever a flow starts or ends
(fluid model). The shares are the max-min fair allocation (Bertsekas and Gallager, Data
Networks, 6.5.2), found by progressive filling: every unfrozen flow grows at the same
pace until a link is full, the flows through that link are frozen at their rate, repeat.

Flows on the same route always get the same rate, so the network keeps them together:
a route holds its flow count and the bytes each of its flows has received since it
became busy, and each flow only the count at which it is done (a heap per route).
A recomputation costs one pass per bottleneck level over the busy routes, not the
flows, and advancing time costs one update per busy route. Flows that start at the
same instant are added together and the shares computed once for them: an arrival
schedules one zero-delay recomputation, which the other arrivals of that instant join.

:class:`ClusterNetwork` builds the links of a :class:`~models.hardware.ClusterSpec`:
each node's NICs (all of them together, one capacity per direction), each GPU's
intra-node link (per direction) and, on a fat tree spanning leaf switches, each leaf's
uplinks. Dedicated server nodes get NICs like the others.

Simultaneous completions fire in the order their flows were started.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np
import simpy

from models.errors import ConfigError, require_int, require_number
from models.hardware import ClusterSpec

#: A flow whose remaining transfer time is below this fraction of the clock counts as
#: done: floating-point residue must not schedule wakeups closer together than the
#: clock can tell apart.
_TIME_TOLERANCE = 4e-12
#: From this many routes on, the numpy filling beats the plain-Python one.
_NUMPY_ROUTES = 128


class _Route:
    __slots__ = ("links", "count", "rate", "served", "since", "pending", "finish_s")

    def __init__(self, links: tuple[int, ...]):
        self.links = links
        self.count = 0
        self.rate = 0.0
        #: Bytes each flow on this route has received from ``since`` back to when the
        #: route last became busy.
        self.served = 0.0
        self.since = 0.0
        #: (served count at which the flow is done, start order, event).
        self.pending: list[tuple[float, int, simpy.Event]] = []
        #: When the first pending flow finishes at the current rate.
        self.finish_s = math.inf

    def advance(self, now: float) -> None:
        self.served += self.rate * (now - self.since)
        self.since = now


class Network:
    """Links (capacities in bytes/s per direction) and the flows crossing them."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._names: list[str] = []
        self._capacity: list[float] = []
        self._routes: dict[tuple[int, ...], _Route] = {}
        #: Routes with flows moving bytes, in the order they became busy.
        self._busy: dict[tuple[int, ...], _Route] = {}
        #: Per link, the busy routes that cross it.
        self._crossing: list[dict[tuple[int, ...], _Route]] = []
        #: Routes whose flow count changed since the last recomputation.
        self._changed: dict[tuple[int, ...], _Route] = {}
        self._next_sequence = 0
        self._generation = 0
        self._recompute_pending = False
        #: Rate recomputations so far, and routes they covered (cost figures).
        self.recomputations = 0
        self.routes_recomputed = 0

    # ----------------------------------------------------------------------------------
    # links

    def add_link(self, name: str, capacity_Bps: float) -> int:
        require_number(f"link {name}.capacity_Bps", capacity_Bps, minimum=0.0,
                       exclusive_minimum=True)
        self._names.append(name)
        self._capacity.append(float(capacity_Bps))
        self._crossing.append({})
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
        key = tuple(route)
        path = self._routes.get(key)
        if path is None:
            for link in key:
                if not isinstance(link, int) or not 0 <= link < len(self._names):
                    raise ConfigError("route", list(key),
                                      f"link indices in 0..{self.links - 1}")
            if len(set(key)) != len(key):
                raise ConfigError("route", list(key), "distinct links")
            path = self._routes[key] = _Route(key)
        if not size_bytes >= 0 or not latency_s >= 0:
            require_number("size_bytes", size_bytes, minimum=0.0)
            require_number("latency_s", latency_s, minimum=0.0)
        done = self.env.event()
        if size_bytes == 0 or not key:
            # Nothing to share: only the latency (a route of no links is a local copy).
            if latency_s > 0:
                self.env.timeout(latency_s).callbacks.append(lambda _: done.succeed())
            else:
                done.succeed()
            return done
        sequence = self._next_sequence
        self._next_sequence += 1
        if latency_s > 0:
            self.env.timeout(latency_s).callbacks.append(
                lambda _: self._arrive(path, size_bytes, sequence, done))
        else:
            self._arrive(path, size_bytes, sequence, done)
        return done

    def active_rates(self) -> dict[int, float]:
        """Current rate (bytes/s) of every flow moving bytes, by start order."""
        return {sequence: path.rate for path in self._busy.values()
                for _, sequence, _ in path.pending}

    # ----------------------------------------------------------------------------------
    # internals

    def _arrive(self, path: _Route, size_bytes: float, sequence: int, done: simpy.Event
                ) -> None:
        now = self.env.now
        if path.count == 0:
            path.served, path.since, path.rate = 0.0, now, 0.0
            self._busy[path.links] = path
            for link in path.links:
                self._crossing[link][path.links] = path
        else:
            path.advance(now)
        heapq.heappush(path.pending, (path.served + size_bytes, sequence, done))
        path.count += 1
        self._changed[path.links] = path
        if not self._recompute_pending:
            self._recompute_pending = True
            self.env.timeout(0).callbacks.append(self._deferred_recompute)

    def _deferred_recompute(self, _event) -> None:
        self._recompute_pending = False
        if self._changed:
            self._reallocate()

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return
        now = self.env.now
        horizon = _TIME_TOLERANCE * max(1.0, now)
        finished: list[tuple[int, simpy.Event]] = []
        for key, path in list(self._busy.items()):
            if path.finish_s > now + horizon:
                continue
            path.advance(now)
            pending = path.pending
            slack = path.rate * horizon
            while pending and pending[0][0] - path.served <= slack + 1e-12 * pending[0][0]:
                _, sequence, event = heapq.heappop(pending)
                finished.append((sequence, event))
            path.count = len(pending)
            self._changed[key] = path
            if not pending:
                del self._busy[key]
                for link in key:
                    del self._crossing[link][key]
                path.rate = 0.0
                path.finish_s = math.inf
        self._reallocate()
        finished.sort(key=lambda item: item[0])
        for _, event in finished:
            event.succeed()

    def _affected(self) -> list[_Route]:
        """Busy routes connected (through shared links) to a route that changed: only
        their shares can move."""
        seen: dict[tuple[int, ...], _Route] = {}
        links = [link for key in self._changed for link in key]
        visited = set(links)
        while links:
            link = links.pop()
            for key, path in self._crossing[link].items():
                if key not in seen:
                    seen[key] = path
                    for other in key:
                        if other not in visited:
                            visited.add(other)
                            links.append(other)
        self._changed = {}
        return list(seen.values())

    def _reallocate(self) -> None:
        self._generation += 1
        self.recomputations += 1
        affected = self._affected()
        now = self.env.now
        if affected:
            self.routes_recomputed += len(affected)
            fill = max_min_rates if len(affected) < _NUMPY_ROUTES else max_min_rates_numpy
            rates = fill([path.links for path in affected], [path.count for path in affected],
                         self._capacity)
            for path, rate in zip(affected, rates, strict=True):
                path.advance(now)
                path.rate = rate
                path.finish_s = now + (path.pending[0][0] - path.served) / rate
        next_s = min((path.finish_s for path in self._busy.values()), default=math.inf)
        if next_s < math.inf:
            generation = self._generation
            self.env.timeout(max(next_s - now, 0.0)).callbacks.append(
                lambda _: self._wake(generation))


def max_min_rates(routes: Sequence[tuple[int, ...]], counts: Sequence[int],
                  capacity: Sequence[float]) -> list[float]:
    """Max-min fair rate of each flow on each route (``counts[i]`` flows on
    ``routes[i]``, a tuple of link indices) over links of the given capacities.

    Progressive filling, several bottlenecks per pass: a link's fair share (capacity
    left over its unfrozen flows) only grows as flows elsewhere freeze below it, so a
    link whose share is no larger than the share of any other link its flows cross
    saturates before any of its flows could be frozen elsewhere; all such links freeze
    their flows at their share in the same pass.
    """
    on_link: dict[int, int] = {}
    count_on = on_link.get
    for links, count in zip(routes, counts, strict=True):
        for link in links:
            on_link[link] = count_on(link, 0) + count
    left = {link: capacity[link] for link in on_link}
    rates = [0.0] * len(routes)
    unfrozen = [i for i, count in enumerate(counts) if count > 0 and routes[i]]
    tolerance = 1 - 1e-12
    while unfrozen:
        share = {}
        for link, n in on_link.items():
            if n:
                room = left[link]
                share[link] = (room if room > 0 else 0.0) / n
        # Per route the smallest share on it; per link the smallest of those among the
        # routes crossing it. A link whose own share is that smallest is a bottleneck.
        lowest_on_link: dict[int, float] = {}
        lowest = []
        for i in unfrozen:
            links = routes[i]
            low = min([share[link] for link in links])
            lowest.append(low)
            for link in links:
                if low < lowest_on_link.get(link, math.inf):
                    lowest_on_link[link] = low
        still = []
        for i, low in zip(unfrozen, lowest, strict=True):
            links = routes[i]
            for link in links:
                if share[link] * tolerance <= lowest_on_link[link]:
                    break
            else:
                still.append(i)
                continue
            rates[i] = low
            count = counts[i]
            for link in links:
                left[link] -= low * count
                on_link[link] -= count
        unfrozen = still
    return rates


def max_min_rates_numpy(routes: Sequence[tuple[int, ...]], counts: Sequence[int],
                        capacity: Sequence[float]) -> list[float]:
    """:func:`max_min_rates` vectorised over routes (same passes, same answer)."""
    hops = max(len(route) for route in routes)
    table = np.array([route + (-1,) * (hops - len(route)) for route in routes], dtype=np.intp)
    weight = np.asarray(counts, dtype=float)
    links = len(capacity)
    left = np.asarray(capacity, dtype=float).copy()
    rates = np.zeros(len(routes))
    unfrozen = np.flatnonzero((weight > 0) & (table[:, 0] >= 0))
    # One extra entry that padding (-1) reads: an infinite share, never a bottleneck.
    share = np.empty(links + 1)
    bottleneck = np.zeros(links + 1, dtype=bool)
    while unfrozen.size:
        rows = table[unfrozen]
        w = weight[unfrozen]
        valid = rows >= 0
        on_link = np.bincount(rows[valid], minlength=links,
                              weights=np.broadcast_to(w[:, None], rows.shape)[valid])
        used = on_link > 0
        share[:] = math.inf
        share[:links][used] = np.maximum(left[used], 0.0) / on_link[used]
        row_share = share[rows]
        lowest = row_share.min(axis=1)
        below = (lowest[:, None] < row_share * (1 - 1e-12)) & valid
        blocked = np.bincount(rows[below], minlength=links) > 0
        bottleneck[:links] = used & ~blocked
        hit = bottleneck[rows].any(axis=1)
        rates[unfrozen[hit]] = lowest[hit]
        frozen = rows[hit]
        keep = frozen >= 0
        left -= np.bincount(frozen[keep], minlength=links, weights=np.broadcast_to(
            (lowest[hit] * w[hit])[:, None], frozen.shape)[keep])
        unfrozen = unfrozen[~hit]
    return rates.tolist()


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
        self.network = Network(env)
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
