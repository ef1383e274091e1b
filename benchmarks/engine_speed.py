"""How fast the engine plays out training, against bare SimPy.

Prints, in one run:
- the bare SimPy event rate (processes that only wait on timeouts);
- a 1024-GPU synchronous ResNet-50 run (128 nodes x 8 H200, NVLink 4, InfiniBand NDR;
  25 MB buckets overlapped with backward, log-normal compute noise, 100 iterations);
- a 256-worker asynchronous parameter-server run (32 nodes x 8, flows on the NICs);
- two example scenarios whose time goes into the flow-level network (max-min fair
  shares recomputed at every flow start and end): ``stragglers-failures`` (synchronous
  parameter server, 64 workers pushing to and pulling from 8 colocated servers) and
  ``gossip-v100-roce`` (128 workers each pushing its model to a random peer).

For each: wall and CPU seconds of the simulation (cost tables built beforehand; CPU
time is the steadier figure on a busy machine), SimPy events processed and callbacks
fired (a shared barrier event is one event but one callback per waiting worker), and
their rates. The timing is :mod:`simulator.bench`'s (``ddlsim bench``); this script
adds CPU time, the H200 cases and the example scenarios.

    PYTHONPATH=. python benchmarks/engine_speed.py [--ps-iterations N] [--ps-servers S]
        [--scenario-iterations N]
"""

from __future__ import annotations

import argparse

from models import catalog
from simulator.bench import bare_simpy, timed_simulate
from simulator.costs import Costs
from simulator.predict import straggler_model
from simulator.scenario import load_scenario
from simulator.stragglers import LogNormal, StragglerModel


def timed_run(label: str, costs: Costs, algorithm: str, **kwargs) -> None:
    timing, result = timed_simulate(label, costs, algorithm, **kwargs)
    wall_s, events, callbacks = timing.wall_s, timing.events, timing.callbacks
    summary = result.summary
    print(f"{label}")
    print(f"  wall {wall_s:.2f} s (cpu {timing.cpu_s:.2f} s) | "
          f"{events} events ({events / wall_s:,.0f}/s) | "
          f"{callbacks} callbacks ({callbacks / wall_s:,.0f}/s) | "
          f"{len(result.iterations)} worker-iterations "
          f"({len(result.iterations) / wall_s:,.0f}/s)")
    print(f"  simulated {summary['simulated_time_s']:.3f} s, iteration "
          f"{summary['iteration_time_mean_s'] * 1e3:.2f} ms mean, "
          f"{summary['throughput_samples_per_s']:,.0f} samples/s, scaling efficiency "
          f"{summary['scaling_efficiency']:.3f}")


def scenario_run(name: str, iterations: int) -> None:
    scenario = load_scenario(name, [f"run.iterations={iterations}"])
    costs = Costs.from_models(scenario.workload_spec(), scenario.cluster_spec(),
                              scenario.workload.batch_per_gpu, scenario.workload.precision,
                              framework=scenario.workload.framework)
    timed_run(f"scenario {name} ({scenario.algorithm.name}, {scenario.world_size} GPUs), "
              f"{iterations} iterations", costs, scenario.algorithm.name,
              iterations=iterations, options=dict(scenario.algorithm.options),
              stragglers=straggler_model(scenario), seed=scenario.run.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ps-iterations", type=int, default=20,
                        help="iterations per worker of the async PS run (default 20)")
    parser.add_argument("--ps-servers", type=int, default=1,
                        help="parameter servers of the async PS run (default 1)")
    parser.add_argument("--scenario-iterations", type=int, default=100,
                        help="iterations of the example scenario runs (default 100)")
    args = parser.parse_args()

    bare = bare_simpy(100, 2000)
    print(f"{bare.name}: {bare.events_per_s:,.0f} events/s "
          f"(cpu {bare.events / bare.cpu_s:,.0f}/s)")

    sync_cluster = catalog.cluster("h200-sxm", 128, 8, "nvlink4", "ib-ndr")
    sync_costs = Costs.from_models("resnet50", sync_cluster, 128, "bf16")
    timed_run("allreduce, ResNet-50, 1024 GPUs (128 x 8 H200), 25 MB buckets, "
              "log-normal sigma 0.1, 100 iterations",
              sync_costs, "allreduce", iterations=100,
              stragglers=StragglerModel(noise=LogNormal(0.1)), seed=0)

    ps_cluster = catalog.cluster("h200-sxm", 32, 8, "nvlink4", "ib-ndr")
    ps_costs = Costs.from_models("resnet50", ps_cluster, 128, "bf16")
    timed_run(f"ps-async, ResNet-50, 256 workers (32 x 8 H200), {args.ps_servers} "
              f"colocated server(s), log-normal sigma 0.1, {args.ps_iterations} iterations "
              "per worker",
              ps_costs, "ps-async", iterations=args.ps_iterations,
              options={"servers": args.ps_servers},
              stragglers=StragglerModel(noise=LogNormal(0.1)), seed=0)

    for name in ("stragglers-failures", "gossip-v100-roce"):
        scenario_run(name, args.scenario_iterations)


if __name__ == "__main__":
    main()
