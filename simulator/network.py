"""Links as shared resources: flows with max-min fair bandwidth shares.

A flow crosses a route of links. It first waits out its latency, then moves its bytes at
its share of the bandwidth; shares are recomputed whenever a flow starts or ends
(fluid model). The shares are the max-min fair allocation (Bertsekas and Gallager, Data
Networks, 6.5.2), found by progressive filling: every unfrozen flow grows at the same
pace until a link is full, the flows through that link are frozen at their rate, repeat.

Flows on the same route always get the same rate, so the network keeps them together:
a route holds its flow count and the bytes each of its flows has received since it
became busy, and each flow only the count at which it is done (a heap per route).
A recomputation covers the busy routes connected through shared links to a route whose
count changed (all busy routes when there are few), not the flows: it takes the
bottleneck links one at a time from a heap of fair shares, freezing each route once,
and a route whose share comes out unchanged keeps its finish time. Advancing time
costs one update per busy route. Flows that start at the same instant are added
together and the shares computed once for them: an arrival
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

import simpy

from models.errors import ConfigError, require_int, require_number
from models.hardware import ClusterSpec

#: A flow whose remaining transfer time is below this fraction of the clock counts as
#: done: floating-point residue must not schedule wakeups closer together than the
#: clock can tell apart.
_TIME_TOLERANCE = 4e-12
#: Up to this many busy routes, a recomputation covers them all rather than searching
#: for those connected to a change: the search costs about as much as the filling, and
#: with few routes most of them are connected anyway. Routes whose share comes out as
#: it was are left alone either way.
_WHOLE_NETWORK_ROUTES = 128


class _Route:
    __slots__ = ("links", "count", "rate", "served", "since", "pending", "finish_s", "stamp",
                 "moved")

    def __init__(self, links: tuple[int, ...], count: int = 0):
        self.links = links
        self.count = count
        self.rate = 0.0
        #: Bytes each flow on this route has received from ``since`` back to when the
        #: route last became busy.
        self.served = 0.0
        self.since = 0.0
        #: (served count at which the flow is done, start order, event).
        self.pending: list[tuple[float, int, simpy.Event]] = []
        #: When the first pending flow finishes at the current rate.
        self.finish_s = math.inf
        #: The filling that last froze this route's rate.
        self.stamp = -1
        #: Whether flows joined or left since the last filling (the first to finish may
        #: be another one).
        self.moved = False

    def advance(self, now: float) -> None:
        self.served += self.rate * (now - self.since)
        self.since = now


def _water_fill(heap: list[tuple[float, int]], left: list[float], unfrozen: list[int],
                crossing: Sequence[dict[tuple[int, ...], _Route]], stamp: int
                ) -> list[tuple[_Route, float]]:
    """Progressive filling one bottleneck at a time: (route, rate per flow) for every
    route crossing the links in ``heap``, in the order they freeze.

    ``heap`` holds (fair share, link) for those links, the share being ``left[link]``
    (capacity not yet given away) over ``unfrozen[link]`` (flows not yet frozen); both
    lists are updated in place. The link of least share saturates first: all its flows
    freeze at that share. Freezing flows at a share no larger than another link's share
    can only raise that link's share, so a heap entry is a lower bound of its link's
    share: an entry found stale goes back with the current share, and an entry that is
    current is the global minimum. Routes are marked frozen with ``stamp``.
    """
    frozen: list[tuple[_Route, float]] = []
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        share, link = pop(heap)
        n = unfrozen[link]
        if not n:
            continue
        room = left[link]
        current = (room if room > 0 else 0.0) / n
        if current > share:
            push(heap, (current, link))
            continue
        for path in crossing[link].values():
            if path.stamp == stamp:
                continue
            path.stamp = stamp
            count = path.count
            used = current * count
            for other in path.links:
                left[other] -= used
                unfrozen[other] -= count
            frozen.append((path, current))
    return frozen


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
        #: Per link, the flows moving bytes across it.
        self._flows_on: list[int] = []
        #: Links with flows moving bytes.
        self._loaded: dict[int, None] = {}
        #: Per link, the recomputation that last reached it.
        self._reached: list[int] = []
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
        self._flows_on.append(0)
        self._reached.append(-1)
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
        flows_on = self._flows_on
        if path.count == 0:
            path.served, path.since, path.rate = 0.0, now, 0.0
            self._busy[path.links] = path
            for link in path.links:
                self._crossing[link][path.links] = path
                if not flows_on[link]:
                    self._loaded[link] = None
                flows_on[link] += 1
        else:
            path.advance(now)
            for link in path.links:
                flows_on[link] += 1
        heapq.heappush(path.pending, (path.served + size_bytes, sequence, done))
        path.count += 1
        path.moved = True
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
        flows_on = self._flows_on
        for key, path in list(self._busy.items()):
            if path.finish_s > now + horizon:
                continue
            path.advance(now)
            pending = path.pending
            slack = path.rate * horizon
            while pending and pending[0][0] - path.served <= slack + 1e-12 * pending[0][0]:
                _, sequence, event = heapq.heappop(pending)
                finished.append((sequence, event))
            done = path.count - len(pending)
            path.count = len(pending)
            path.moved = True
            self._changed[key] = path
            for link in key:
                flows_on[link] -= done
            if not pending:
                del self._busy[key]
                for link in key:
                    del self._crossing[link][key]
                    if not flows_on[link]:
                        del self._loaded[link]
                path.rate = 0.0
                path.finish_s = math.inf
        self._reallocate()
        finished.sort(key=lambda item: item[0])
        for _, event in finished:
            event.succeed()

    def _reallocate(self) -> None:
        """New shares for the busy routes connected (through shared links) to a route
        that changed (only their shares can move), or for all of them in a small
        network."""
        self._generation += 1
        generation = self._generation
        self.recomputations += 1
        crossing, capacity, reached = self._crossing, self._capacity, self._reached
        # The flows each link would still carry; the filling counts them down, so it
        # works on a copy.
        unfrozen = self._flows_on[:]
        left = capacity[:]
        stack = []
        if len(self._busy) <= _WHOLE_NETWORK_ROUTES:
            heap = [(capacity[link] / unfrozen[link], link) for link in self._loaded]
        else:
            heap = []
            for key in self._changed:
                for link in key:
                    if reached[link] != generation:
                        reached[link] = generation
                        stack.append(link)
        self._changed = {}
        while stack:
            link = stack.pop()
            members = crossing[link]
            if not members:
                continue
            heap.append((capacity[link] / unfrozen[link], link))
            for key in members:
                for other in key:
                    if reached[other] != generation:
                        reached[other] = generation
                        stack.append(other)
        now = self.env.now
        if heap:
            heapq.heapify(heap)
            frozen = _water_fill(heap, left, unfrozen, crossing, generation)
            self.routes_recomputed += len(frozen)
            for path, rate in frozen:
                # Most shares come out bit for bit as they were; such a route's finish
                # time stands.
                if rate == path.rate and not path.moved:
                    continue
                path.moved = False
                path.served += path.rate * (now - path.since)
                path.since = now
                path.rate = rate
                path.finish_s = now + (path.pending[0][0] - path.served) / rate
        next_s = min([path.finish_s for path in self._busy.values()], default=math.inf)
        if next_s < math.inf:
            self.env.timeout(next_s - now if next_s > now else 0.0).callbacks.append(
                lambda _: self._wake(generation))


def max_min_rates(routes: Sequence[tuple[int, ...]], counts: Sequence[int],
                  capacity: Sequence[float]) -> list[float]:
    """Max-min fair rate of each flow on each route (``counts[i]`` flows on
    ``routes[i]``, a tuple of distinct link indices) over links of the given capacities;
    0 for a route with no flows or no links."""
    crossing: dict[int, dict[int, _Route]] = {}
    unfrozen: dict[int, int] = {}
    paths = []
    for i, (links, count) in enumerate(zip(routes, counts, strict=True)):
        path = _Route(tuple(links), count)
        paths.append(path)
        if count > 0:
            for link in path.links:
                crossing.setdefault(link, {})[i] = path
                unfrozen[link] = unfrozen.get(link, 0) + count
    left = {link: float(capacity[link]) for link in crossing}
    heap = [(left[link] / unfrozen[link], link) for link in crossing]
    heapq.heapify(heap)
    for path, rate in _water_fill(heap, left, unfrozen, crossing, 0):
        path.rate = rate
    return [path.rate for path in paths]


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
