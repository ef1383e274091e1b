"""The seed study: synchronous all-reduce against asynchronous and decentralized SGD.

Run: ``.venv/bin/python benchmarks/seed_study.py`` (a few minutes on two cores; ``--jobs``
sets the processes, ``--study`` picks studies, ``--iterations`` the simulated length).

Jin, Yuan, Iandola, Keutzer 2016 ("How to scale distributed deep learning?", arXiv
1611.04581) trained ResNet-18 on ImageNet with one GPU per node and compared
synchronous all-reduce SGD with the asynchronous parameter server, elastic averaging SGD
(EASGD) and gossiping SGD. Their finding: the asynchronous methods reach a given
accuracy sooner at small node counts (up to about 32), synchronous all-reduce at larger
ones (about 100 and more). This script runs the same comparison through ddlsim's models
and prints, per node count and algorithm, iteration time, throughput, scaling
efficiency, staleness, the schedule factor (samples the simulated update schedule needs
relative to synchronous SGD, measured by replaying it on the proxy problem) and time to
a fixed accuracy, then where the fastest method changes.

Studies (each a shipped example scenario with overrides, nothing fitted to the paper):

``jin2016``
    Example ``jin2016-resnet18``: ResNet-18, batch 32 per GPU, fp32, one GPU per node,
    8 to 128 nodes. Hardware: an NVIDIA Titan X (Maxwell, 2015) per node on 56 Gbit/s
    FDR InfiniBand, the GPU and the fabric of an academic GPU cluster of 2016. The
    paper's own description of its cluster could not be consulted where this was
    written, so this is the era's typical hardware, not a record of theirs. The
    parameter server and the EASGD center are 4 dedicated server nodes with their
    parameters sharded; gossip pushes each worker's model to one random peer per step.
    Target: the 90-epoch schedule (ResNet-18 has no fitted convergence law, so every
    batch size needs the same samples and only the schedule factor separates the
    methods). Time to accuracy is 90 epochs x schedule factor / throughput.
``jin2016-noise``
    The same with log-normal compute noise of sigma 0.2 on every worker (a shared
    cluster's jitter, not a value taken from the paper), all-reduce and the asynchronous
    parameter server only: an ingredient the example leaves out, and one that a
    synchronous step pays for and an asynchronous one does not.
``modern``
    Example ``modern-h100``: ResNet-50 in bf16 at batch 256 per GPU on 8-GPU H100 SXM
    nodes (NVLink 4 inside, one 400 Gbit/s NDR NIC per GPU), 1 to 16 nodes, to 75.9%
    top-1 with the MLPerf critical-batch law. One server shard per node, on the worker
    nodes.

What the models say (default settings), and why it differs from the paper:

- In the paper's setting, as the example has it, there is no sync/async crossover:
  all-reduce is ahead of the asynchronous parameter server at every node count (the
  server takes 1.2x as long to the target at 8 nodes, 2-2.3x at 16-32, 17x at 128). All-reduce
  scales almost perfectly (92-93% efficiency from 8 to 128 nodes): ResNet-18's 47 MB of
  gradients are all-reduced in buckets while the backward pass runs (PyTorch DDP
  style), and a ring all-reduce moves about twice the model per worker whatever the
  node count, most of it hidden behind the backward pass. The asynchronous server is
  bounded by its 4 server NICs, which carry every worker's push and pull: its
  throughput saturates (about 11,700 samples/s at 128 nodes against all-reduce's
  55,000) while its staleness grows with the node count (about N versions) and with it
  the measured schedule factor (1.4-1.6 at 16-64 nodes, 3.6 at 128). EASGD shares the
  servers and their throughput but tolerates the delay (factor near 1): behind
  all-reduce throughout.
- Gossip keeps all-reduce's throughput within about 10% (one peer exchange per
  step, no server), and replaying its schedule on the convex proxy measures a factor
  of about 0.88, so in this model gossip is the fastest method at every node count,
  4-7% ahead of all-reduce. That margin rests on the proxy's factor, a first-order
  estimate (README, "Time to accuracy"); the paper did not find gossip ahead of
  all-reduce at scale.
- The difference from the paper lies in what the example leaves out: compute jitter,
  which every synchronous step waits on (the slowest of N workers), and the 2016
  implementations' all-reduce after the backward pass (MPI, no bucketing). The
  ``jin2016-noise`` study adds jitter only (log-normal, sigma 0.2, chosen as a round
  figure for a shared cluster, not fitted): all-reduce's efficiency drops to 72% at 8
  nodes and 58% at 128, the asynchronous server does not wait, and the paper's shape
  appears: the asynchronous server is ahead at 8 nodes (0.85x all-reduce's time) and
  all-reduce from 16 nodes on (1.2x at 16 and 32, 9x at 128), once the server NICs
  saturate and staleness grows. The crossover falls between 8 and 16 nodes rather than
  near 32.
- On the modern cluster (8-GPU H100 nodes on NDR, one server shard per node) the
  asynchronous server's throughput is above all-reduce's at every size (no barrier on
  the 5% jitter of the example; shards scale with the nodes), so the sync/async balance
  is set by the schedule factor, which grows with the worker count (0.94 at 8 GPUs, 1.4
  at 32-64, 3.7 at 128): the asynchronous server is ahead on 1-2 nodes (up to 16 GPUs),
  the two are within about 10% at 4-8 nodes, and all-reduce is 2x ahead at 16 nodes
  (128 GPUs). Measured in workers the crossover moves out, from 8-16 GPUs to 32-128.
  Gossip (factor about 0.78) is the fastest method at every size here too, and EASGD
  edges ahead of all-reduce (by 5-10%) from 4 nodes on.

The output states the fastest method per node count, where it changes, and where the
asynchronous parameter server and all-reduce trade places (a lead under 10% counts as a
tie: the measured schedule factor moves by about that much between neighbouring node
counts), for each study as it came out of the run; the paragraphs above describe a run
with the default settings (20 iterations, the examples' seeds).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from simulator.predict import predict  # noqa: E402
from simulator.scenario import load_scenario, with_overrides  # noqa: E402

Overrides = Mapping[str, Any] | Callable[[int], Mapping[str, Any]]
DEDICATED = {"algorithm.servers": 4, "algorithm.server_placement": "dedicated"}


def _per_node_servers(name: str) -> Callable[[int], dict[str, Any]]:
    def overrides(nodes: int) -> dict[str, Any]:
        return {"algorithm.name": name, "algorithm.servers": nodes,
                "algorithm.server_placement": "colocated"}
    return overrides


@dataclass(frozen=True)
class Study:
    title: str
    example: str
    nodes: tuple[int, ...]
    algorithms: Mapping[str, Overrides]
    overrides: Mapping[str, Any] = field(default_factory=dict)


JIN_ALGORITHMS: dict[str, Overrides] = {
    "allreduce": {"algorithm.name": "allreduce"},
    "ps-async": {"algorithm.name": "ps-async", **DEDICATED},
    "easgd": {"algorithm.name": "easgd", **DEDICATED},
    "gossip": {"algorithm.name": "gossip"},
}

STUDIES = {
    "jin2016": Study(
        "Jin et al. 2016 setting: ResNet-18, 1 Titan X (Maxwell) per node, FDR InfiniBand, "
        "90 epochs", "jin2016-resnet18", (8, 16, 32, 64, 128), JIN_ALGORITHMS),
    "jin2016-noise": Study(
        "The same with log-normal compute noise (sigma 0.2)", "jin2016-resnet18",
        (8, 16, 32, 64, 128),
        {k: JIN_ALGORITHMS[k] for k in ("allreduce", "ps-async")},
        {"stragglers.noise": "lognormal", "stragglers.sigma": 0.2}),
    "modern": Study(
        "Modern cluster: ResNet-50 bf16, 8 x H100 SXM per node, NDR InfiniBand, to 75.9% "
        "top-1", "modern-h100", (1, 2, 4, 8, 16),
        {"allreduce": {"algorithm.name": "allreduce"},
         "ps-async": _per_node_servers("ps-async"),
         "easgd": _per_node_servers("easgd"),
         "gossip": {"algorithm.name": "gossip"}}),
}

COLUMNS = ("iteration_ms", "samples_per_s", "efficiency", "staleness", "schedule_factor",
           "tta_h")


def evaluate(study_name: str, nodes: int, algorithm: str, iterations: int) -> dict[str, Any]:
    """One prediction (run in a worker process)."""
    study = STUDIES[study_name]
    overrides = study.algorithms[algorithm]
    if callable(overrides):
        overrides = overrides(nodes)
    scenario = with_overrides(load_scenario(study.example), {
        **study.overrides, "cluster.nodes": nodes, "run.iterations": iterations,
        **overrides})
    started = time.perf_counter()
    s = predict(scenario).summary()
    tta_s = s["time_to_accuracy_s"]
    return {
        "study": study_name, "nodes": nodes, "gpus": s["gpus"], "algorithm": algorithm,
        "iteration_ms": 1e3 * s["iteration_time_s"],
        "samples_per_s": s["throughput_samples_per_s"],
        "efficiency": s["scaling_efficiency"],
        "staleness": math.nan if s["staleness_mean"] is None else s["staleness_mean"],
        "schedule_factor": math.nan if s["schedule_factor"] is None else s["schedule_factor"],
        "tta_h": math.nan if tta_s is None else tta_s / 3600.0,
        "note": s["time_to_accuracy_note"] or "",
        "wall_s": time.perf_counter() - started,
    }


def _evaluate(args: tuple[str, int, str, int]) -> dict[str, Any]:
    return evaluate(*args)


def run(studies: list[str], iterations: int, jobs: int) -> pd.DataFrame:
    points = [(name, n, algorithm, iterations) for name in studies
              for n in STUDIES[name].nodes for algorithm in STUDIES[name].algorithms]
    # Largest clusters first: they take longest, so the pool ends evenly.
    points.sort(key=lambda p: -p[1] * load_scenario(STUDIES[p[0]].example).cluster.gpus_per_node)
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_evaluate, points):
            rows.append(row)
            print(f"  {row['study']:<14} {row['nodes']:>4} nodes  {row['algorithm']:<10} "
                  f"{row['wall_s']:6.1f} s", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def fastest(part: pd.DataFrame) -> pd.DataFrame:
    """Per node count: the algorithm with the least time to accuracy, and the runner-up."""
    rows = []
    for n, group in part.groupby("nodes"):
        ranked = group.dropna(subset=["tta_h"]).sort_values("tta_h")
        if ranked.empty:
            continue
        second = ranked.iloc[1] if len(ranked) > 1 else None
        rows.append({"nodes": n, "gpus": int(ranked.gpus.iloc[0]),
                     "fastest": ranked.algorithm.iloc[0], "tta_h": ranked.tta_h.iloc[0],
                     "runner_up": "" if second is None else second.algorithm,
                     "lead": math.nan if second is None
                     else second.tta_h / ranked.tta_h.iloc[0] - 1.0})
    return pd.DataFrame(rows).set_index("nodes")


def changes(best: pd.DataFrame) -> list[str]:
    """Where the fastest method changes, in words."""
    lines = []
    previous = None
    for n, row in best.iterrows():
        if previous is not None and row.fastest != previous[1]:
            lines.append(f"between {previous[0]} and {n} nodes: {previous[1]} -> {row.fastest}")
        previous = (n, row.fastest)
    return lines


#: Times to accuracy within this fraction of each other count as a tie: the measured
#: schedule factor (4 proxy seeds, 3 learning rates) moves by about this much between
#: neighbouring node counts.
TIE = 0.10


def sync_async(part: pd.DataFrame) -> str:
    """Where all-reduce and the asynchronous parameter server trade places."""
    tta = part.pivot(index="nodes", columns="algorithm", values="tta_h")
    if not {"allreduce", "ps-async"} <= set(tta.columns):
        return "(no all-reduce / ps-async pair in this study)"
    ratio = tta["ps-async"] / tta["allreduce"]
    verdicts = {n: "ps-async" if r < 1.0 - TIE else "allreduce" if r > 1.0 + TIE else "tie"
                for n, r in ratio.items()}
    cells = ", ".join(f"{n}: {r:.2f}" for n, r in ratio.items())
    groups = {who: [n for n, v in verdicts.items() if v == who]
              for who in ("ps-async", "tie", "allreduce")}
    said = "; ".join(f"{who} ahead at {', '.join(map(str, nodes))} nodes" if who != "tie"
                     else f"within {TIE:.0%} at {', '.join(map(str, nodes))} nodes"
                     for who, nodes in groups.items() if nodes)
    async_ahead, sync_ahead = groups["ps-async"], groups["allreduce"]
    if async_ahead and sync_ahead and max(async_ahead) < min(sync_ahead):
        verdict = (f"crossover: asynchronous ahead up to {max(async_ahead)} nodes, "
                   f"synchronous from {min(sync_ahead)}")
    elif async_ahead and sync_ahead:
        verdict = "no single crossover: the lead changes hands more than once"
    else:
        verdict = "no crossover"
    return (f"{verdict} ({said})\n"
            f"    ps-async / allreduce time to accuracy by nodes: {cells}")


def report(frame: pd.DataFrame, studies: list[str]) -> None:
    pd.set_option("display.width", 160)
    for name in studies:
        study = STUDIES[name]
        part = frame[frame.study == name]
        print(f"\n=== {name}: {study.title}")
        print(f"    example {study.example}, overrides {dict(study.overrides) or 'none'}")
        table = part.set_index(["nodes", "algorithm"])[list(COLUMNS)]
        print(table.to_string(float_format=lambda v: f"{v:,.3f}" if abs(v) < 10
                              else f"{v:,.0f}"))
        notes = part[part.note != ""]
        for _, row in notes.iterrows():
            print(f"    note {row.nodes} nodes {row.algorithm}: {row.note}")
        print("\n  time to accuracy (h), nodes x algorithm:")
        pivot = part.pivot(index="nodes", columns="algorithm", values="tta_h")
        print(pivot[list(study.algorithms)].to_string(float_format=lambda v: f"{v:.2f}"))
        best = fastest(part)
        print("\n  fastest to the target:")
        print(best.to_string(float_format=lambda v: f"{v:.3f}"))
        moved = changes(best)
        print("\n  fastest method changes: " + ("; ".join(moved) if moved else
                                                 f"never ({best.fastest.iloc[0]} throughout)"))
        print("  all-reduce against the asynchronous parameter server: " + sync_async(part))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", action="append", choices=list(STUDIES),
                        help="a study to run (repeatable; default: all)")
    parser.add_argument("--iterations", type=int, default=20,
                        help="simulated iterations (gradients per worker) per point")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes to run points in")
    args = parser.parse_args(argv)
    studies = args.study or list(STUDIES)
    started = time.perf_counter()
    frame = run(studies, args.iterations, args.jobs)
    report(frame, studies)
    print(f"\n{len(frame)} predictions, {args.iterations} iterations each, "
          f"{time.perf_counter() - started:.0f} s on {args.jobs} processes")


if __name__ == "__main__":
    main()
