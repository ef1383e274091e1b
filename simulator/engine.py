"""The SimPy engine: :func:`simulate` plays out training iteration by iteration.

An algorithm module (see :mod:`simulator.algorithms`) starts SimPy processes on an
:class:`Context`: one per worker, plus whatever shared parts it needs (a fabric of
collectives, parameter servers). Every duration comes from :class:`~simulator.costs.Costs`
(so from ``models/``); stragglers and failures enter through each worker's clock
(``StragglerModel.clock(worker, seed)`` of :mod:`simulator.stragglers`); what happens is
reported to one :class:`~simulator.recorder.Recorder`.

Simultaneous events run in the order they were scheduled (SimPy's first-in first-out
tie-break for equal times and priorities). Worker processes are started in worker order,
so at one instant worker 0 acts before worker 1; a parameter server serves shards that
arrive at one instant in the order their flows were started; flows that finish at one
instant complete in the order they were started. A run is therefore a pure function of
its inputs and seed.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import asdict, is_dataclass
from types import MappingProxyType
from typing import Any

import simpy

from models.errors import ConfigError, nearest, require_int
from simulator.algorithms import algorithm_module
from simulator.costs import Costs
from simulator.network import ClusterNetwork
from simulator.recorder import Recorder
from simulator.result import RunResult, ddlsim_version, summarize
from simulator.stragglers import plan_compute


class NominalClock:
    """A worker without a straggler model: nominal compute times, no failures."""

    restart_s = 0.0

    def compute_time_s(self, start_s: float, base_s: float) -> float:
        return base_s

    def next_failure_s(self, after_s: float) -> float:
        return math.inf


_NOMINAL = NominalClock()


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes and the callbacks
    (process resumptions, mostly) they fire: one event that a thousand workers wait on
    is one event but a thousand resumptions."""

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.events_processed = 0
        self.callbacks_fired = 0

    def step(self) -> None:
        queue = self._queue
        if queue:
            callbacks = queue[0][3].callbacks
            if callbacks:
                self.callbacks_fired += len(callbacks)
        self.events_processed += 1
        super().step()


class Context:
    """What an algorithm's processes share: the environment, costs, resolved options,
    each worker's clock, the recorder and (built on first use) the cluster network.

    Attributes an algorithm sets: ``gradients_applied`` (gradients that went into the
    model; samples processed = that times the batch per GPU).
    """

    def __init__(self, env: CountingEnvironment, costs: Costs, options: Mapping[str, Any],
                 iterations: int, seed: int, clocks: list, recorder: Recorder):
        self.env = env
        self.costs = costs
        self.options = MappingProxyType(dict(options))
        self.iterations = iterations
        self.seed = seed
        self.workers = costs.workers
        self.recorder = recorder
        self.gradients_applied = 0
        self._clocks = clocks
        self._network: ClusterNetwork | None = None

    def cluster_network(self, extra_nodes: int = 0) -> ClusterNetwork:
        """The flow-level network of the cluster (plus ``extra_nodes`` server nodes)."""
        if self._network is None:
            self._network = ClusterNetwork(self.env, self.costs.cluster, extra_nodes)
        elif self._network.total_nodes != self.costs.cluster.nodes + extra_nodes:
            raise ConfigError("extra_nodes", extra_nodes,
                              f"{self._network.total_nodes - self.costs.cluster.nodes} "
                              "(the network was already built)")
        return self._network

    def plan_compute(self, worker: int, ready_s: float, base_s: float) -> tuple[float, float]:
        """(begin_s, duration_s) of a compute phase of nominal length ``base_s`` that the
        worker can start at ``ready_s``.

        A failure inside the phase loses its work and the phase starts over
        (:func:`simulator.stragglers.plan_compute`); each is recorded. Failures while the
        worker communicates or waits are not charged.
        """
        begin, duration, failures = plan_compute(self._clocks[worker], ready_s, base_s)
        for failure, back in failures:
            self.recorder.failure(worker, failure, back)
        return begin, duration

    def compute(self, worker: int, base_s: float) -> Generator[simpy.Event, Any, tuple]:
        """Compute now for nominal ``base_s`` (``yield from`` it in a worker process).
        Returns ``(duration_s, lost_s)``: the successful phase, and the time lost to
        failures before it began."""
        now = self.env.now
        begin, duration = self.plan_compute(worker, now, base_s)
        yield self.env.timeout(begin + duration - now)
        return duration, begin - now


def _clocks(stragglers: Any, workers: int, seed: int) -> list:
    if stragglers is None:
        return [_NOMINAL] * workers
    if not callable(getattr(stragglers, "clock", None)):
        raise ConfigError("stragglers", type(stragglers).__name__,
                          "a StragglerModel (an object with clock(worker, seed)) or None")
    return [stragglers.clock(worker, seed) for worker in range(workers)]


def resolve_options(name: str, options: Mapping[str, Any] | None, costs: Costs
                    ) -> dict[str, Any]:
    """The algorithm's defaults overlaid with ``options``, checked by the module."""
    module = algorithm_module(name)
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ConfigError("algorithm", options, "a mapping of option names to values")
    for key, value in options.items():
        if key not in module.OPTIONS:
            raise ConfigError(f"algorithm.{key}", value,
                              f"an option of {name}: {', '.join(module.OPTIONS) or 'none'}",
                              nearest(key, module.OPTIONS))
    return dict(module.validate({**module.OPTIONS, **options}, costs))


def _describe(stragglers: Any) -> Any:
    if stragglers is None:
        return None
    if is_dataclass(stragglers):
        return {"type": type(stragglers).__name__, **asdict(stragglers)}
    return repr(stragglers)


def simulate(costs: Costs, algorithm: str, *, iterations: int,
             options: Mapping[str, Any] | None = None, stragglers: Any = None,
             seed: int = 0) -> RunResult:
    """Play out ``iterations`` training iterations of ``algorithm`` on ``costs.cluster``,
    one worker per GPU.

    ``iterations``: synchronous algorithms run that many steps; asynchronous ones run
    until as many gradients (``iterations * workers``) have been applied.
    """
    if not isinstance(costs, Costs):
        raise ConfigError("costs", type(costs).__name__, "a simulator.costs.Costs")
    require_int("run.iterations", iterations, minimum=1)
    require_int("run.seed", seed, minimum=0)
    module = algorithm_module(algorithm)
    resolved = resolve_options(algorithm, options, costs)
    env = CountingEnvironment()
    recorder = Recorder()
    ctx = Context(env, costs, resolved, iterations, seed,
                  _clocks(stragglers, costs.workers, seed), recorder)
    finished = module.run(ctx)
    env.run(until=finished)
    iterations_frame = recorder.iterations_frame()
    staleness = recorder.staleness_series()
    summary = summarize(
        iterations_frame, staleness, workers=costs.workers,
        batch_per_gpu=costs.batch_per_gpu,
        samples_processed=ctx.gradients_applied * costs.batch_per_gpu,
        simulated_time_s=float(env.now),
        single_gpu_throughput_samples_per_s=costs.single_gpu_throughput_samples_per_s,
        synchronous=module.SYNCHRONOUS)
    summary["failures"] = len(recorder.failures)
    meta = {
        "algorithm": algorithm,
        "options": resolved,
        "iterations": iterations,
        "seed": seed,
        "stragglers": _describe(stragglers),
        "costs": costs.describe(),
        "events": env.events_processed,
        "callbacks": env.callbacks_fired,
        "version": ddlsim_version(),
    }
    return RunResult(iterations=iterations_frame, update_log=recorder.update_frame(),
                     staleness=staleness, summary=summary, meta=meta)
