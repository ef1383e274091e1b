"""Asynchronous parameter server (Downpour SGD, Dean et al. 2012).

Each worker, on its own: pull the current parameters (its read version), compute a
gradient, push it; the servers apply it (staleness = the version it lands on minus the
read version) and the worker starts over. Nobody waits for anybody, except through the
shared network and the servers' queues.

``staleness_bound`` (``-1``: none) bounds how far workers drift apart, stale synchronous
parallel counted in versions (Ho et al. 2013): before it pulls, a worker waits while the
oldest read version still in flight (another worker's gradient not yet applied) is more
than ``staleness_bound`` versions behind the current one. The slowest worker is never
held back, so there is no deadlock; each update then lands at most ``staleness_bound +
workers - 1`` versions after the one it was computed on.

A run ends once ``iterations * workers`` gradients have been applied; iterations still
in flight then are not recorded. Breakdown: ``communication_s`` is the pull plus the push
until its last shard arrived; ``waiting_s`` the wait at the staleness bound, time lost to
failures, and the servers' queue and apply.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

import simpy

from models.errors import require_int
from simulator.algorithms.parameter_server import ParameterServers, validate_servers
from simulator.costs import Costs

OPTIONS: Mapping[str, Any] = {"servers": 1, "server_placement": "colocated",
                              "staleness_bound": -1}
SYNCHRONOUS = False


def validate(options: Mapping[str, Any], costs: Costs) -> dict[str, Any]:
    servers, placement = validate_servers(options, costs.cluster)
    bound = require_int("algorithm.staleness_bound", options["staleness_bound"], minimum=-1)
    return {"servers": servers, "server_placement": placement, "staleness_bound": bound}


class _InFlight:
    """Read versions of gradients being computed or pushed, and the workers held back
    by the staleness bound."""

    def __init__(self, env: simpy.Environment, bound: int):
        self.env = env
        self.bound = bound
        self._count: dict[int, int] = {}
        self._heap: list[int] = []
        self._waiting: list[simpy.Event] = []

    def _oldest(self) -> int | None:
        while self._heap and not self._count.get(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    def _clear(self, version: int) -> bool:
        oldest = self._oldest()
        return self.bound < 0 or oldest is None or version - oldest <= self.bound

    def gate(self, version: int) -> simpy.Event | None:
        """None to go ahead now, else an event to wait for."""
        if self._clear(version):
            return None
        event = self.env.event()
        self._waiting.append(event)
        return event

    def add(self, version: int) -> None:
        if not self._count.get(version):
            heapq.heappush(self._heap, version)
        self._count[version] = self._count.get(version, 0) + 1

    def remove(self, version: int, current: int) -> None:
        self._count[version] -= 1
        if self._waiting and self._clear(current):
            waiting, self._waiting = self._waiting, []
            for event in waiting:
                event.succeed()


def _worker(ctx, worker: int, servers: ParameterServers, in_flight: _InFlight,
            finished: simpy.Event):
    env = ctx.env
    recorder = ctx.recorder
    base_s = ctx.costs.gradient_compute_s
    target = ctx.iterations * ctx.workers
    iteration = 0
    while True:
        start_s = env.now
        gate = in_flight.gate(recorder.version)
        if gate is not None:
            yield gate
        read_version = recorder.version
        in_flight.add(read_version)
        pull_from = env.now
        yield servers.pull(worker)
        pull_s = env.now - pull_from
        compute_s, _ = yield from ctx.compute(worker, base_s)
        push_from = env.now
        delivered_s, _ = yield servers.push(worker)
        recorder.update(env.now, "push", worker=worker, read_version=read_version,
                        step=iteration)
        in_flight.remove(read_version, recorder.version)
        ctx.gradients_applied += 1
        communication_s = pull_s + (delivered_s - push_from)
        waiting_s = env.now - start_s - compute_s - communication_s
        recorder.iteration(iteration, worker, start_s, compute_s, communication_s,
                           waiting_s, env.now)
        iteration += 1
        if ctx.gradients_applied == target:
            finished.succeed()
        if ctx.gradients_applied >= target:
            return


def run(ctx) -> simpy.Event:
    options = ctx.options
    servers = ParameterServers(ctx, options["servers"], options["server_placement"])
    in_flight = _InFlight(ctx.env, options["staleness_bound"])
    finished = ctx.env.event()
    for worker in range(ctx.workers):
        ctx.env.process(_worker(ctx, worker, servers, in_flight, finished))
    return finished
