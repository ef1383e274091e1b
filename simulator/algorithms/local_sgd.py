"""Local SGD (periodic model averaging; Zinkevich et al. 2010, Lin et al. 2020).

Each worker takes ``local_steps`` SGD steps on its own model (forward, backward and
optimizer update, no communication); then every worker's model is averaged with one
all-reduce of the full model (the closed-form time of
:func:`models.collectives.allreduce_time_s` for ``model_bytes``), which starts once the
slowest worker has finished its round. One round is therefore ``local_steps`` steps of
compute and one all-reduce; with ``local_steps = 1`` it is synchronous all-reduce SGD
without overlap (the gradient all-reduce of one bucket replaced by a parameter
all-reduce of the same size).

A run is ``iterations`` local steps per worker; the last round is shorter when
``iterations`` is not a multiple of ``local_steps``, and ends with an average too, so the
run finishes on one shared model.

The models differ between averages, so the algorithm is not synchronous, yet there is
no center model and no stale gradient: every gradient is taken on the model it is applied
to. The run has no staleness samples and the summary reports none; the cost of model
disagreement is what :func:`models.emulation.emulate` measures from the ``local`` and
``average`` rows.

A worker's compute phase is one draw of its clock for forward plus backward (failures
restart it, :meth:`simulator.engine.Context.plan_compute`); the optimizer update is
nominal, as in :mod:`simulator.algorithms.allreduce`. A failed worker holds up the next
average: nobody can average without its model.

Breakdown per worker and step: ``compute_s`` the step's own compute and update;
``communication_s`` the all-reduce on a step that closes a round, else zero;
``waiting_s`` time lost to failures plus, on a round-closing step, the wait for the
slowest worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import simpy

from models.errors import require_int
from simulator.costs import Costs

OPTIONS: Mapping[str, Any] = {"local_steps": 8}
SYNCHRONOUS = False


def validate(options: Mapping[str, Any], costs: Costs) -> dict[str, Any]:
    local_steps = require_int("algorithm.local_steps", options["local_steps"], minimum=1)
    return {"local_steps": local_steps}


class _Round:
    __slots__ = ("arrived", "slowest_s", "all_arrived", "done", "end_s")

    def __init__(self, env: simpy.Environment):
        self.arrived = 0
        self.slowest_s = 0.0
        self.all_arrived = env.event()
        self.done = env.event()
        self.end_s = 0.0


class Averager:
    """Waits for every worker's round, then all-reduces the models."""

    def __init__(self, ctx, allreduce_s: float):
        self.ctx = ctx
        self.env = ctx.env
        self.allreduce_s = allreduce_s
        self.round = _Round(self.env)

    def arrive(self, ready_s: float) -> _Round:
        """A worker whose round of local steps ends at ``ready_s`` (now)."""
        current = self.round
        current.arrived += 1
        if ready_s > current.slowest_s:
            current.slowest_s = ready_s
        if current.arrived == self.ctx.workers:
            current.all_arrived.succeed()
        return current

    def run(self, round_ends: list[int]):
        env, ctx = self.env, self.ctx
        for steps in round_ends:
            current = self.round
            yield current.all_arrived
            yield env.timeout(self.allreduce_s)
            current.end_s = env.now
            ctx.recorder.update(env.now, "average", step=steps)
            self.round = _Round(env)
            current.done.succeed()


def round_ends(iterations: int, local_steps: int) -> list[int]:
    """Local steps done when each average happens."""
    ends = list(range(local_steps, iterations + 1, local_steps))
    if not ends or ends[-1] != iterations:
        ends.append(iterations)
    return ends


def _worker(ctx, worker: int, averager: Averager, closing: frozenset[int]):
    env = ctx.env
    base_s = ctx.costs.gradient_compute_s
    update_s = ctx.costs.update_total_s
    recorder = ctx.recorder
    start_s = env.now
    for step in range(ctx.iterations):
        begin_s, duration_s = ctx.plan_compute(worker, start_s, base_s)
        ready_s = begin_s + duration_s + update_s
        yield env.timeout(ready_s - env.now)
        recorder.update(ready_s, "local", worker=worker, step=step)
        ctx.gradients_applied += 1
        compute_s = duration_s + update_s
        waiting_s = begin_s - start_s
        communication_s = 0.0
        end_s = ready_s
        if step + 1 in closing:
            current = averager.arrive(ready_s)
            yield current.done
            end_s = current.end_s
            waiting_s += current.slowest_s - ready_s
            communication_s = end_s - current.slowest_s
        recorder.iteration(step, worker, start_s, compute_s, communication_s, waiting_s,
                           end_s)
        start_s = end_s


def run(ctx) -> simpy.Event:
    costs = ctx.costs
    averager = Averager(ctx, costs.allreduce_time_s(costs.model_bytes))
    ends = round_ends(ctx.iterations, ctx.options["local_steps"])
    closing = frozenset(ends)
    for worker in range(ctx.workers):
        ctx.env.process(_worker(ctx, worker, averager, closing))
    return ctx.env.process(averager.run(ends))
