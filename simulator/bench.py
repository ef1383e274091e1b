"""Engine speed: how many simulation events per second, bare SimPy against the engine.

``ddlsim bench`` (or ``python -m simulator.bench``) times three runs and prints wall
seconds, events processed and events per second for each:

1. bare SimPy: processes that only wait on ``env.timeout`` (the ceiling any SimPy model
   can reach on this machine);
2. synchronous all-reduce at 1024 GPUs: ResNet-50, 128 nodes x 8 H100 SXM, NVLink 4
   inside the node, 8 NDR InfiniBand NICs per node, 25 MB DDP buckets, log-normal
   compute noise (sigma 0.05), 100 iterations;
3. asynchronous parameter server with 256 workers (32 nodes x 8, the same hardware), when
   ``ps-async`` is available: as many gradients as 100 synchronous iterations apply.

Events are those the engine's :class:`simulator.engine.CountingEnvironment` processes
(``RunResult.meta["events"]``); the wall time of a run excludes building its cost model,
reported apart as ``setup_s``. ``--quick`` runs tiny sizes to check that it works; its
figures mean little.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import simpy

from models import catalog
from simulator.algorithms import available
from simulator.costs import Costs
from simulator.engine import CountingEnvironment, simulate
from simulator.result import RunResult
from simulator.stragglers import StragglerModel


@dataclass(frozen=True)
class BenchResult:
    """One timed run. ``cpu_s`` is the steadier figure on a busy machine; ``callbacks``
    counts resumptions (a shared barrier event is one event but one callback per
    waiting worker)."""

    name: str
    wall_s: float
    events: int
    setup_s: float = 0.0
    cpu_s: float = 0.0
    callbacks: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_s": self.events_per_s}


def bare_simpy(processes: int, timeouts_each: int) -> BenchResult:
    """``processes`` SimPy processes, each waiting on ``timeouts_each`` unit timeouts."""
    env = CountingEnvironment()

    def sleeper(env: simpy.Environment):
        for _ in range(timeouts_each):
            yield env.timeout(1.0)

    for _ in range(processes):
        env.process(sleeper(env))
    started, started_cpu = time.perf_counter(), time.process_time()
    env.run()
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return BenchResult(f"bare SimPy: {processes} processes x {timeouts_each} timeouts",
                       wall, env.events_processed, cpu_s=cpu, callbacks=env.callbacks_fired)


def timed_simulate(name: str, costs: Costs, algorithm: str, setup_s: float = 0.0,
                   **kwargs: Any) -> tuple[BenchResult, RunResult]:
    """:func:`simulator.engine.simulate` timed; ``kwargs`` go to it."""
    started, started_cpu = time.perf_counter(), time.process_time()
    result = simulate(costs, algorithm, **kwargs)
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return BenchResult(name, wall, int(result.meta["events"]), setup_s, cpu,
                       int(result.meta["callbacks"])), result


def engine_run(name: str, algorithm: str, *, nodes: int, iterations: int,
               options: dict[str, Any] | None = None) -> BenchResult:
    """ResNet-50 at batch 256 per GPU on ``nodes`` x 8 H100 SXM (NVLink 4, 8 NDR NICs per
    node), log-normal noise sigma 0.05, seed 0."""
    started = time.perf_counter()
    cluster = catalog.cluster("h100-sxm", nodes, 8, "nvlink4", "ib-ndr", nics_per_node=8)
    costs = Costs.from_models("resnet50", cluster, 256, "bf16")
    stragglers = StragglerModel.from_section({"noise": "lognormal", "sigma": 0.05})
    setup = time.perf_counter() - started
    return timed_simulate(name, costs, algorithm, setup, iterations=iterations,
                          options=options, stragglers=stragglers, seed=0)[0]


def run_all(quick: bool = False) -> list[BenchResult]:
    nodes_sync, nodes_async, iterations = (2, 2, 5) if quick else (128, 32, 100)
    results = [bare_simpy(100, 100) if quick else bare_simpy(1000, 300)]
    results.append(engine_run(
        f"allreduce: {nodes_sync * 8} GPUs, {iterations} iterations", "allreduce",
        nodes=nodes_sync, iterations=iterations, options={"bucket_mb": 25.0}))
    if "ps-async" in available():
        results.append(engine_run(
            f"ps-async: {nodes_async * 8} workers, {iterations * nodes_async * 8} gradients",
            "ps-async", nodes=nodes_async, iterations=iterations))
    return results


def table(results: list[BenchResult]) -> str:
    width = max(len(result.name) for result in results)
    lines = [f"{'run':<{width}}  {'wall s':>8}  {'events':>11}  {'events/s':>11}  "
             f"{'setup s':>7}"]
    lines += [f"{r.name:<{width}}  {r.wall_s:>8.3f}  {r.events:>11,}  "
              f"{r.events_per_s:>11,.0f}  {r.setup_s:>7.3f}" for r in results]
    return "\n".join(lines)


def report(quick: bool = False, as_json: bool = False) -> str:
    """Runs :func:`run_all` and returns its table, or its JSON."""
    results = run_all(quick=quick)
    if as_json:
        return json.dumps([result.as_dict() for result in results], indent=2)
    return table(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ddlsim bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that the benchmark runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    print(report(args.quick, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
