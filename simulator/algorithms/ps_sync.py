"""Synchronous parameter server, optionally with backup workers (Chen et al. 2016).

Each step: every worker pulls the current parameters, computes a gradient and pushes it
(flows on the cluster network, one per shard). Once ``workers - backup_workers`` gradients
computed on the current version have arrived, the servers apply their mean (each server
its shard, all at once) and the step is done; those workers go on to the next step. A
gradient that arrives later, or was computed on an older version, is dropped (Chen et al.
2016: the slowest ``b`` gradients of each step are not waited for); its worker pulls the
new parameters and joins the next step.

``aggregation = "node"``: each node's host sums its GPUs' gradients before pushing one
gradient for the node, and pulls the parameters once for all of them, as TensorFlow's
``distributed_replicated`` mode (tf_cnn_benchmarks: the towers' gradients averaged on the
worker, one apply per worker on the servers, the updated value read once per worker and
copied to each GPU) and MXNet's ``dist_device_sync`` kvstore do. The servers then see
``nodes`` gradients per step, not ``workers``. Moving a copy of the model between the host
and its GPUs takes each GPU's own link in parallel: ``latency + model_bytes /
intra-node bandwidth``, once after the pull and once before the push. No backup workers.

A run is ``iterations`` steps. Breakdown: ``communication_s`` is the pull plus the push
(with the node's copies); ``waiting_s`` the wait for the step to be applied (other
workers, the apply) and time lost to failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import simpy

from models.errors import ConfigError, require_choice, require_int
from simulator.algorithms.parameter_server import ParameterServers, validate_servers
from simulator.costs import Costs

OPTIONS: Mapping[str, Any] = {"servers": 1, "server_placement": "colocated",
                              "backup_workers": 0, "aggregation": "gpu"}
AGGREGATIONS = ("gpu", "node")
SYNCHRONOUS = True


def check_backup_with_aggregation(backup_workers: int, aggregation: str) -> None:
    if aggregation == "node" and backup_workers:
        raise ConfigError("algorithm.backup_workers", backup_workers,
                          "0 with aggregation 'node' (a node pushes one gradient for all "
                          "its GPUs, so no single GPU's gradient can be dropped)")


def validate(options: Mapping[str, Any], costs: Costs) -> dict[str, Any]:
    servers, placement = validate_servers(options, costs.cluster)
    backup = require_int("algorithm.backup_workers", options["backup_workers"], minimum=0)
    if backup >= costs.workers:
        raise ConfigError("algorithm.backup_workers", backup,
                          f"fewer than the {costs.workers} workers")
    aggregation = require_choice("algorithm.aggregation", options["aggregation"],
                                 AGGREGATIONS)
    check_backup_with_aggregation(backup, aggregation)
    return {"servers": servers, "server_placement": placement, "backup_workers": backup,
            "aggregation": aggregation}


class _Steps:
    """Counts the gradients of the current step and applies it when enough are in."""

    def __init__(self, ctx, servers: ParameterServers, needed: int, finished: simpy.Event,
                 gradients_per_delivery: int = 1):
        self.ctx = ctx
        self.env = ctx.env
        self.apply_s = servers.apply_s
        self.needed = needed
        self.gradients_per_delivery = gradients_per_delivery
        self.finished = finished
        self.accepted = 0
        self.done = self.env.event()

    def deliver(self, read_version: int) -> simpy.Event | None:
        """The event of the step this gradient counts in, or None if it is dropped."""
        if read_version != self.ctx.recorder.version or self.accepted >= self.needed:
            return None
        self.accepted += 1
        if self.accepted == self.needed:
            self.env.timeout(self.apply_s).callbacks.append(self._applied)
        return self.done

    def _applied(self, _event) -> None:
        ctx = self.ctx
        version = ctx.recorder.update(self.env.now, "sync", read_version=ctx.recorder.version,
                                      step=ctx.recorder.version)
        ctx.gradients_applied += self.needed * self.gradients_per_delivery
        self.accepted = 0
        done, self.done = self.done, self.env.event()
        done.succeed()
        if version + 1 == ctx.iterations:
            self.finished.succeed()


def _group(ctx, workers: range, endpoint: tuple[int, int | None], copy_s: float,
           servers: ParameterServers, steps: _Steps):
    """One pusher: a worker GPU on its own (``copy_s`` 0), or a node's host for its GPUs,
    copying the model to and from them in ``copy_s``."""
    env = ctx.env
    recorder = ctx.recorder
    base_s = ctx.costs.gradient_compute_s
    iteration = 0
    while True:
        start_s = env.now
        read_version = recorder.version
        yield servers.pull_to(endpoint)
        if copy_s:
            yield env.timeout(copy_s)
        pull_s = env.now - start_s
        phases = [env.process(ctx.compute(worker, base_s)) for worker in workers]
        yield env.all_of(phases)
        push_from = env.now
        if copy_s:
            yield env.timeout(copy_s)
        yield servers.send_from(endpoint)
        push_s = env.now - push_from
        step = steps.deliver(read_version)
        if step is not None:
            yield step
        communication_s = pull_s + push_s
        for worker, phase in zip(workers, phases, strict=True):
            compute_s, _ = phase.value
            recorder.iteration(iteration, worker, start_s, compute_s, communication_s,
                               env.now - start_s - compute_s - communication_s, env.now)
        iteration += 1


def run(ctx) -> simpy.Event:
    options = ctx.options
    servers = ParameterServers(ctx, options["servers"], options["server_placement"])
    finished = ctx.env.event()
    cluster = ctx.costs.cluster
    if options["aggregation"] == "node":
        gpus = cluster.gpus_per_node
        copy_s = 0.0
        if gpus > 1:
            copy_s = (cluster.intra_link.latency_s
                      + ctx.costs.model_bytes / cluster.intra_link.achievable_bandwidth_Bps)
        steps = _Steps(ctx, servers, cluster.nodes, finished, gradients_per_delivery=gpus)
        for node in range(cluster.nodes):
            ctx.env.process(_group(ctx, range(node * gpus, (node + 1) * gpus), (node, None),
                                   copy_s, servers, steps))
        return finished
    steps = _Steps(ctx, servers, ctx.workers - options["backup_workers"], finished)
    for worker in range(ctx.workers):
        ctx.env.process(_group(ctx, range(worker, worker + 1),
                               servers.net.worker_endpoint(worker), 0.0, servers, steps))
    return finished
