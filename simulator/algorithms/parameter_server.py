"""Parameter servers shared by ``ps-sync`` and ``ps-async`` (and EASGD's center).

The model's parameters are sharded evenly over ``servers`` servers. A colocated server
lives on a worker GPU: server ``s`` on node ``s mod nodes``, GPU ``(s div nodes) mod
gpus_per_node`` (spread over the nodes first, as :func:`models.collectives.ps_push_time_s`
assumes). A dedicated server has a node of its own, after the worker nodes, with the
cluster's NICs.

Pushes and pulls are flows on the cluster network (:class:`simulator.network.ClusterNetwork`),
one per shard, so workers that talk to the same server NIC share it fairly. A server
applies the shards it receives one at a time, first come first served, each taking the
optimizer update over its shard (the per-layer update times of the compute model,
divided by the number of shards).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import simpy

from models.errors import ConfigError, require_choice, require_int
from models.hardware import ClusterSpec

PLACEMENTS = ("colocated", "dedicated")


def validate_servers(options: Mapping[str, Any], cluster: ClusterSpec) -> tuple[int, str]:
    servers = require_int("algorithm.servers", options["servers"], minimum=1)
    placement = require_choice("algorithm.server_placement", options["server_placement"],
                               PLACEMENTS)
    workers = cluster.world_size
    if placement == "colocated" and servers > workers:
        raise ConfigError("algorithm.servers", servers,
                          f"at most the {workers} worker GPUs colocated servers live on")
    if placement == "dedicated" and cluster.inter_link is None:
        raise ConfigError("algorithm.server_placement", placement,
                          "colocated (dedicated servers need cluster.inter_link, a network "
                          "to reach them)")
    return servers, placement


class ParameterServers:
    def __init__(self, ctx, servers: int, placement: str):
        self.ctx = ctx
        self.env = ctx.env
        cluster = ctx.costs.cluster
        dedicated = placement == "dedicated"
        self.net = ctx.cluster_network(extra_nodes=servers if dedicated else 0)
        if dedicated:
            self.hosts = [(cluster.nodes + s, None) for s in range(servers)]
        else:
            self.hosts = [(s % cluster.nodes, (s // cluster.nodes) % cluster.gpus_per_node)
                          for s in range(servers)]
        self.servers = servers
        self.shard_bytes = ctx.costs.model_bytes / servers
        self.apply_s = ctx.costs.update_total_s / servers
        self._busy_until = [0.0] * servers

    def _gather(self, events: list[simpy.Event]) -> simpy.Event:
        return events[0] if len(events) == 1 else self.env.all_of(events)

    def pull(self, worker: int) -> simpy.Event:
        """Every shard from its server to the worker; fires when the last has arrived."""
        return self.pull_to(self.net.worker_endpoint(worker))

    def pull_to(self, endpoint: tuple[int, int | None]) -> simpy.Event:
        """Every shard to ``endpoint`` (a worker GPU, or ``(node, None)``: a node's host,
        which reaches another node through the NICs and its own node's servers for free)."""
        return self._gather([self.net.transfer(host, endpoint, self.shard_bytes)
                             for host in self.hosts])

    def send(self, worker: int) -> simpy.Event:
        """Every gradient shard from the worker to its server (no apply)."""
        return self.send_from(self.net.worker_endpoint(worker))

    def send_from(self, endpoint: tuple[int, int | None]) -> simpy.Event:
        """Every gradient shard from ``endpoint`` (see :meth:`pull_to`) to its server."""
        return self._gather([self.net.transfer(endpoint, host, self.shard_bytes)
                             for host in self.hosts])

    def push(self, worker: int) -> simpy.Event:
        """Send the gradient's shards; each server applies its shard when it arrives,
        after the shards queued before it. The event's value is ``(delivered_s,
        applied_s)``: when the last shard arrived and when the last was applied."""
        endpoint = self.net.worker_endpoint(worker)
        done = self.env.event()
        state = [self.servers, 0.0, 0.0]

        def arrived(server: int, _event) -> None:
            now = self.env.now
            finish = max(now, self._busy_until[server]) + self.apply_s
            self._busy_until[server] = finish
            state[0] -= 1
            state[1] = max(state[1], now)
            state[2] = max(state[2], finish)
            if state[0] == 0:
                wait = self.env.timeout(state[2] - now, (state[1], state[2]))
                wait.callbacks.append(lambda event: done.succeed(event.value))

        for server, host in enumerate(self.hosts):
            flow = self.net.transfer(endpoint, host, self.shard_bytes)
            flow.callbacks.append(lambda event, server=server: arrived(server, event))
        return done
