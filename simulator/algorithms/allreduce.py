"""Synchronous data-parallel SGD with bucketed all-reduce (PyTorch DDP, Horovod).

Each iteration a worker runs forward and backward. Its gradients fill buckets in
reverse layer order (:meth:`simulator.costs.Costs.buckets`); a bucket can be all-reduced
once every worker has produced the last of its gradients. The fabric runs collectives one
after another (a FIFO, as NCCL runs them on one communicator's stream), each taking the
closed-form time of :func:`models.collectives.allreduce_time_s`. With ``overlap`` the
first buckets go while the backward pass is still running; without it, all of them
wait for the backward pass to end. Every worker then applies the optimizer update, and
the next iteration starts.

A worker's compute phase is one draw of its clock for forward plus backward; a bucket's
gradients are ready at the same fraction of that phase as in the nominal profile. The
update is nominal, so all workers begin each iteration together.

Breakdown per worker and iteration: ``compute_s`` is its own forward, backward and
update; ``waiting_s`` the time from its backward end to the slowest worker's (plus time
lost to failures); ``communication_s`` the rest, the all-reduce time not hidden behind
the slowest worker's backward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import simpy

from models.errors import ConfigError, require_number
from simulator.costs import COLLECTIVES, Costs

OPTIONS: Mapping[str, Any] = {"bucket_mb": 25.0, "overlap": True, "collective": "auto"}
SYNCHRONOUS = True


def validate(options: Mapping[str, Any], costs: Costs) -> dict[str, Any]:
    bucket_mb = require_number("algorithm.bucket_mb", options["bucket_mb"], minimum=0.0,
                               exclusive_minimum=True)
    if not isinstance(options["overlap"], bool):
        raise ConfigError("algorithm.overlap", options["overlap"], "true or false")
    collective = options["collective"]
    if collective not in COLLECTIVES:
        raise ConfigError("algorithm.collective", collective, "one of " + ", ".join(COLLECTIVES))
    # The cost model knows which algorithms this cluster can run (NVLS needs NVSwitch).
    costs.allreduce_time_s(costs.model_bytes, collective)
    return {"bucket_mb": bucket_mb, "overlap": options["overlap"], "collective": collective}


class _Step:
    """One iteration as the fabric sees it."""

    __slots__ = ("reported", "ready_s", "slowest_s", "all_reported", "done", "end_s")

    def __init__(self, env: simpy.Environment, buckets: int):
        self.reported = 0
        self.ready_s = [0.0] * buckets
        self.slowest_s = 0.0
        self.all_reported = env.event()
        self.done = env.event()
        self.end_s = 0.0


class Fabric:
    """Collects every worker's bucket-ready times and runs the collectives in order."""

    def __init__(self, ctx, fractions: list[float], collective_s: list[float]):
        self.ctx = ctx
        self.env = ctx.env
        self.fractions = fractions
        self.collective_s = collective_s
        self.update_s = ctx.costs.update_total_s
        self.step = _Step(self.env, len(fractions))

    def report(self, begin_s: float, duration_s: float) -> _Step:
        """A worker's compute phase for the current step; returns that step."""
        step = self.step
        ready = step.ready_s
        for index, fraction in enumerate(self.fractions):
            at = begin_s + fraction * duration_s
            if at > ready[index]:
                ready[index] = at
        end = begin_s + duration_s
        if end > step.slowest_s:
            step.slowest_s = end
        step.reported += 1
        if step.reported == self.ctx.workers:
            step.all_reported.succeed()
        return step

    def run(self):
        env, ctx = self.env, self.ctx
        free_s = 0.0
        for iteration in range(ctx.iterations):
            step = self.step
            yield step.all_reported
            for ready_s, collective_s in zip(step.ready_s, self.collective_s, strict=True):
                free_s = max(ready_s, free_s) + collective_s
                yield env.timeout(max(0.0, free_s - env.now))
            step.end_s = max(free_s, step.slowest_s) + self.update_s
            yield env.timeout(max(0.0, step.end_s - env.now))
            ctx.recorder.update(env.now, "sync", read_version=iteration, step=iteration)
            ctx.gradients_applied += ctx.workers
            self.step = _Step(env, len(self.fractions))
            step.done.succeed()


def _worker(ctx, worker: int, fabric: Fabric):
    env = ctx.env
    base_s = ctx.costs.gradient_compute_s
    update_s = ctx.costs.update_total_s
    record = ctx.recorder.iteration
    start_s = env.now
    for iteration in range(ctx.iterations):
        begin_s, duration_s = ctx.plan_compute(worker, start_s, base_s)
        step = fabric.report(begin_s, duration_s)
        yield step.done
        compute_s = duration_s + update_s
        waiting_s = (begin_s - start_s) + (step.slowest_s - begin_s - duration_s)
        communication_s = step.end_s - start_s - compute_s - waiting_s
        record(iteration, worker, start_s, compute_s, communication_s, waiting_s, step.end_s)
        start_s = step.end_s


def run(ctx) -> simpy.Event:
    options = ctx.options
    costs = ctx.costs
    buckets = costs.buckets(options["bucket_mb"])
    base_s = costs.gradient_compute_s
    if options["overlap"] and base_s > 0:
        fractions = [bucket.ready_s / base_s for bucket in buckets]
    else:
        fractions = [1.0] * len(buckets)
    collective_s = [costs.allreduce_time_s(bucket.size_bytes, options["collective"])
                    for bucket in buckets]
    fabric = Fabric(ctx, fractions, collective_s)
    for worker in range(ctx.workers):
        ctx.env.process(_worker(ctx, worker, fabric))
    return ctx.env.process(fabric.run())
