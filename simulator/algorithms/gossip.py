"""Gossiping SGD (Jin, Yuan, Iandola, Keutzer 2016, arXiv 1611.04581), push and pull.

Every worker trains its own model. After each local step (forward, backward, optimizer
update) it picks a peer uniformly at random among the other workers and exchanges its
model with it:

``push``
    the worker sends its model to the peer and waits until the last byte has arrived
    (its send buffer is the model it is about to train further); the peer averages the
    model into its own when it arrives, without stopping its own work.
``pull``
    the worker asks the peer for its model (a message of one link latency), waits for
    the model to arrive and averages it into its own.

An exchange is a flow of ``model_bytes`` on the cluster network
(:meth:`simulator.engine.Context.cluster_network`): across nodes it crosses the sending
node's NICs out and the receiving node's NICs in, within a node the two GPUs' links, and
flows through a link share it max-min fairly, so exchanges that happen at the same time
contend. With two workers and no contention an exchange takes
:func:`models.collectives.gossip_exchange_time_s` (push; pull adds the request's
latency). The averaging itself is taken as free (an axpy over the model, small next to
a step).

Peers: worker ``w`` draws one 64-bit key per step from
``models.random_streams.stream(seed, f"gossip.worker-{w}")`` and maps it to a peer with
jump consistent hashing (Lamping, Veach 2014, arXiv 1406.2294): uniform over the other
workers, and with one more worker in the cluster a draw either names the same peer as
before or the new worker (probability ``1 / (workers - 1)``). A lone worker has no peer
and trains alone.

Update log: a ``local`` row at the end of each step; a ``gossip`` row when a model is
averaged in, at the moment it arrives, with ``worker`` the one that started the
exchange and ``peer`` the one it picked. Replay it with
``models.emulation.emulate(..., gossip=variant)``: ``pull`` averages into ``worker``,
``push`` into ``peer``. The replay averages the models as they are at the row, where a
real exchange sends a snapshot taken at its start; the two differ only by what the
sender or peer learned during the transfer.

Failures: a worker that fails is left out while it is down, and the others carry on. An
exchange with a peer that is down when it would start is skipped (a failure detector
tells the worker); one whose peer fails before the model has arrived is lost (no
``gossip`` row); the worker's time is spent either way.

A run ends with the iteration (exchange included) of the ``iterations * workers``-th
local step of all; the other workers' iterations in flight then are not recorded.
Breakdown per worker and iteration: ``compute_s`` the step; ``communication_s`` the
exchange (send until delivered, or request until the model has arrived); ``waiting_s``
time lost to failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import simpy

from models.errors import require_choice
from models.random_streams import stream
from simulator.costs import Costs

OPTIONS: Mapping[str, Any] = {"variant": "push"}
SYNCHRONOUS = False
VARIANTS = ("push", "pull")

_MASK64 = (1 << 64) - 1
#: Keys drawn from a worker's stream at a time (the k-th key is the same either way).
_KEY_BATCH = 256


def validate(options: Mapping[str, Any], costs: Costs) -> dict[str, Any]:
    return {"variant": require_choice("algorithm.variant", options["variant"], VARIANTS)}


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash of a 64-bit ``key`` into ``0 .. buckets - 1`` (Lamping and
    Veach 2014): uniform for a uniform key; going from ``buckets`` to ``buckets + 1``
    moves a key only to the new bucket."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & _MASK64
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


def choose_peer(key: int, worker: int, workers: int) -> int:
    """The peer a 64-bit ``key`` names for ``worker``: any worker but itself, uniformly.
    New workers take the highest indices, so a draw keeps its peer or names a new one."""
    index = jump_hash(key, workers - 1)
    return index if index < worker else index + 1


class PeerDraws:
    """Worker ``w``'s peers, one per step, from its own named stream."""

    def __init__(self, seed: int, worker: int, workers: int):
        self.worker = worker
        self.workers = workers
        self._rng = stream(seed, f"gossip.worker-{worker}")
        self._keys: list[int] = []

    def next(self) -> int:
        if not self._keys:
            batch = self._rng.bit_generator.random_raw(_KEY_BATCH)
            self._keys = [int(key) for key in np.asarray(batch, dtype=np.uint64)[::-1]]
        return choose_peer(self._keys.pop(), self.worker, self.workers)


class _Downtime:
    """Each worker's failure windows, as its compute phases reveal them."""

    def __init__(self, workers: int):
        self._windows: list[list[tuple[float, float]]] = [[] for _ in range(workers)]

    def add(self, worker: int, windows: list[tuple[int, float, float]]) -> None:
        self._windows[worker].extend((failure, back) for _, failure, back in windows)

    def down(self, worker: int, from_s: float, to_s: float) -> bool:
        """Whether ``worker`` is down at some time in ``[from_s, to_s]``."""
        for failure, back in reversed(self._windows[worker]):
            if back <= from_s:
                # Windows come in time order; earlier ones end earlier still.
                return False
            if failure <= to_s:
                return True
        return False


def _worker(ctx, worker: int, downtime: _Downtime, finished: simpy.Event):
    env = ctx.env
    costs = ctx.costs
    base_s = costs.gradient_compute_s
    update_s = costs.update_total_s
    size_bytes = costs.model_bytes
    recorder = ctx.recorder
    target = ctx.iterations * ctx.workers
    pull = ctx.options["variant"] == "pull"
    draws = PeerDraws(ctx.seed, worker, ctx.workers) if ctx.workers > 1 else None
    net = ctx.cluster_network() if draws is not None else None
    me = net.worker_endpoint(worker) if net is not None else None
    step = 0
    start_s = env.now
    while True:
        known = len(ctx.recorder.failures)
        begin_s, duration_s = ctx.plan_compute(worker, start_s, base_s)
        if len(ctx.recorder.failures) > known:
            downtime.add(worker, ctx.recorder.failures[known:])
        ready_s = begin_s + duration_s + update_s
        yield env.timeout(ready_s - env.now)
        if ctx.gradients_applied >= target:
            return
        recorder.update(ready_s, "local", worker=worker, step=step)
        ctx.gradients_applied += 1
        last = ctx.gradients_applied == target
        if draws is not None:
            peer = draws.next()
            if not downtime.down(peer, ready_s, ready_s):
                other = net.worker_endpoint(peer)
                if pull:
                    yield env.timeout(net.route(me, other)[1])
                    yield net.transfer(other, me, size_bytes)
                else:
                    yield net.transfer(me, other, size_bytes)
                if not downtime.down(peer, ready_s, env.now):
                    recorder.update(env.now, "gossip", worker=worker, peer=peer, step=step)
        recorder.iteration(step, worker, start_s, duration_s + update_s, env.now - ready_s,
                           begin_s - start_s, env.now)
        if last:
            finished.succeed()
            return
        step += 1
        start_s = env.now


def run(ctx) -> simpy.Event:
    downtime = _Downtime(ctx.workers)
    finished = ctx.env.event()
    for worker in range(ctx.workers):
        ctx.env.process(_worker(ctx, worker, downtime, finished))
    return finished
