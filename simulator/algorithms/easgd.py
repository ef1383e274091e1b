"""Elastic averaging SGD (Zhang, Choromanska, LeCun 2015), asynchronous, as Jin et al.
(2016, arXiv 1611.04581) ran it.

Each worker trains its own model and every ``tau`` local steps makes an elastic exchange
with the center variable, which the parameter servers hold (sharded as in
:mod:`simulator.algorithms.parameter_server`): it pulls the center (read version ``v``),
moves its own model towards it by ``d = alpha (x_worker - center)`` and pushes ``d``,
which the servers add to the center. On the wire that is one parameter-server pull and
one push of the full model, flows to and from the server shards that contend at the
server NICs; each server adds its shard of ``d`` in its queue, as long as applying a
gradient shard. The worker goes on once its difference has been applied, as a
``ps-async`` worker does, so with one worker and ``tau = 1`` an iteration is a
``ps-async`` iteration plus the worker's own optimizer update (``update_total_s``): the
same pull, push and server apply, and the gradient is applied on the worker as well as
an elastic difference on the servers.

``moving_rate`` is Zhang et al.'s ``beta``; the elastic rate of each worker is
``alpha = beta / workers`` (:func:`elastic_alpha`, the ``alpha=`` of
:func:`models.emulation.emulate`). It shapes convergence only, not time.

Update log: a ``local`` row per step and an ``elastic`` row per exchange when its
difference has been applied, with ``read_version`` the center version the worker pulled:
its staleness is the number of center updates between the pull and the apply.

A run ends with the iteration (exchange included) of the ``iterations * workers``-th
local step of all; the other workers' iterations in flight then are not recorded. A
failed worker is left out while it is down; the others carry on. Breakdown per worker
and step: ``compute_s`` the step (forward, backward, a noise draw for the first two,
nominal update); ``communication_s`` on an exchange step the pull plus the push until
its last shard arrived; ``waiting_s`` time lost to failures and the servers' queue and
apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import simpy

from models.errors import require_int, require_number
from simulator.algorithms.parameter_server import ParameterServers, validate_servers
from simulator.costs import Costs

OPTIONS: Mapping[str, Any] = {"servers": 1, "server_placement": "colocated", "tau": 1,
                              "moving_rate": 0.9}
SYNCHRONOUS = False


def validate(options: Mapping[str, Any], costs: Costs) -> dict[str, Any]:
    servers, placement = validate_servers(options, costs.cluster)
    tau = require_int("algorithm.tau", options["tau"], minimum=1)
    # Zhang et al. take beta in (0, 1]: a larger elastic pull overshoots the center.
    beta = require_number("algorithm.moving_rate", options["moving_rate"], minimum=0.0,
                          maximum=1.0, exclusive_minimum=True)
    return {"servers": servers, "server_placement": placement, "tau": tau,
            "moving_rate": beta}


def elastic_alpha(moving_rate: float, workers: int) -> float:
    """Each worker's elastic rate: ``alpha = beta / p`` (Zhang et al. 2015, section 3)."""
    beta = require_number("algorithm.moving_rate", moving_rate, minimum=0.0, maximum=1.0,
                          exclusive_minimum=True)
    return beta / require_int("workers", workers, minimum=1)


def _worker(ctx, worker: int, servers: ParameterServers, finished: simpy.Event):
    env = ctx.env
    recorder = ctx.recorder
    base_s = ctx.costs.gradient_compute_s
    update_s = ctx.costs.update_total_s
    tau = ctx.options["tau"]
    target = ctx.iterations * ctx.workers
    step = 0
    start_s = env.now
    while True:
        begin_s, duration_s = ctx.plan_compute(worker, start_s, base_s)
        ready_s = begin_s + duration_s + update_s
        yield env.timeout(ready_s - env.now)
        if ctx.gradients_applied >= target:
            return
        recorder.update(ready_s, "local", worker=worker, step=step)
        ctx.gradients_applied += 1
        last = ctx.gradients_applied == target
        communication_s = 0.0
        if (step + 1) % tau == 0:
            read_version = recorder.version
            yield servers.pull(worker)
            delivered_s, _ = yield servers.push(worker)
            recorder.update(env.now, "elastic", worker=worker, read_version=read_version,
                            step=step)
            communication_s = delivered_s - ready_s
        recorder.iteration(step, worker, start_s, duration_s + update_s, communication_s,
                           env.now - start_s - duration_s - update_s - communication_s,
                           env.now)
        if last:
            finished.succeed()
            return
        step += 1
        start_s = env.now


def run(ctx) -> simpy.Event:
    options = ctx.options
    servers = ParameterServers(ctx, options["servers"], options["server_placement"])
    finished = ctx.env.event()
    for worker in range(ctx.workers):
        ctx.env.process(_worker(ctx, worker, servers, finished))
    return finished
