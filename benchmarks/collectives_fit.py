"""Fit the achieved-time constants of NCCL all-reduce to published nccl-tests runs.

    PYTHONPATH=. python benchmarks/collectives_fit.py

Rows: ``allreduce_busbw`` rows of data/validation/published.csv. Each intra-node link with
fitted constants has its fitting GPU, and only that GPU's rows enter its fit:

  nvlink4  h100-sxm rows (n01-n33: one-node 8x H100 SXM sweeps and two-node 16x H100
           over InfiniBand NDR); the h200-sxm rows (p49-p53) stay out of sample and are
           only predicted.
  nvlink3  one-node a100 rows (c15, c26-c41: 8x A100 SXM4 on Oracle BM.GPU4.8 at 10 GB
           and an Azure ND A100 v4 sweep, 256 KB to 8 GB).

Predicted, never fitted: the V100 (nvlink2) rows, as the only medium-size V100 sweep
(c17-c24, 2019) predates NCCL 2.5, whose LL128 protocol and tuner today's NCCL runs; and
the two-node A100 rows over RoCE (c16, c42-c55), whose two sources disagree by a quarter
at large sizes, so they run on NCCL's latencies over the links.

Which (algorithm, protocol) pair a row ran is NCCL's tuner decision
(``collectives.nccl_selection``), which depends on none of the fitted constants; each row
then constrains the constants of its pair. The fitted constants are per hardware (intra-node
link, network link) and per NCCL algorithm/protocol, never per row:

  nvlink4 ring/LL      latency_us, bus_efficiency
  nvlink4 NVLS         launch_us, pipeline_depth, efficiency, step_overhead_us
  nvlink4 NVLS tree    latency_us, efficiency      (per network link: ib-ndr)
  nvlink3 ring/LL, ring/LL128, ring/Simple   latency_us, bus_efficiency

Residuals are log(predicted / measured busbw), each source weighted equally, with a weak
pull towards physical priors (NCCL's own latencies and efficiencies) so that a constant
no row constrains (in leave-one-source-out) stays at its prior instead of wandering.

Prints the fitted constants (as they go into data/hardware/collectives.toml), the signed
error of every fitting row, of the out-of-sample rows, the straight line the 2019 V100
sweep's Simple-ring sizes fall on (what its NCCL 2.4 charged per all-reduce), and the
leave-one-source-out errors: each source predicted by a fit to the others.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import collectives as c  # noqa: E402
from simulator import validation  # noqa: E402

#: Intra-node link -> (the GPUs whose rows fit its constants, the most nodes a fitting row
#: spans).
FIT_SCOPE = {"nvlink4": (("h100-sxm",), 2),
            "nvlink3": (("a100-sxm4-40gb", "a100-sxm4-80gb"), 1)}
NET = "ib-ndr"

#: (link, group, key, prior, prior weight in log units). Priors: NCCL's own figures where
#: it has one. NVLink4: LL latency 15 us and LL capped at 141 GB/s of the 450 GB/s link;
#: nvlsEfficiency 0.85 of the 0.875 the link catalog expects of bulk transfers; NVLS tree
#: latency 67 us; two pipeline stages (reduce, then multicast) for NVLS. NVLink3 (8 ranks,
#: 14 ring steps): LL 6.6 + 14 x 0.6 us and capped at 87.7 of 300 GB/s; LL128 14 + 14 x 1.9
#: us at 0.92 of the link's 0.78; Simple 8.4 + 14 x 3.4 us at the link's 0.78.
PARAMETERS = (
    ("nvlink4", "ring_ll", "latency_us", 15.0, 0.05),
    ("nvlink4", "ring_ll", "bus_efficiency", 141.0 / 450.0, 0.05),
    ("nvlink4", "nvls", "launch_us", 5.0, 0.05),
    ("nvlink4", "nvls", "pipeline_depth", 2.0, 0.05),
    ("nvlink4", "nvls", "efficiency", 0.85 * 0.875, 0.05),
    ("nvlink4", "nvls", "step_overhead_us", 4.0, 0.05),
    ("nvlink4", "nvls_tree", "latency_us", 67.0, 0.05),
    ("nvlink4", "nvls_tree", "efficiency", 0.85, 0.05),
    ("nvlink3", "ring_ll", "latency_us", 15.0, 0.05),
    ("nvlink3", "ring_ll", "bus_efficiency", 87.7 / 300.0, 0.05),
    ("nvlink3", "ring_ll128", "latency_us", 40.6, 0.05),
    ("nvlink3", "ring_ll128", "bus_efficiency", 0.92 * 0.78, 0.05),
    ("nvlink3", "ring_simple", "latency_us", 56.0, 0.05),
    ("nvlink3", "ring_simple", "bus_efficiency", 0.78, 0.05),
)


@dataclass(frozen=True)
class Row:
    id: str
    publication: str
    cluster: object
    size: float
    measured_GBps: float
    pair: tuple[str, str]
    in_sample: bool


def fits(intra_link: str, gpu: str, nodes: int) -> bool:
    gpus, max_nodes = FIT_SCOPE.get(intra_link, ((), 0))
    return gpu in gpus and nodes <= max_nodes


def load_rows() -> list[Row]:
    table = validation.load_measurements()
    rows = []
    for _, record in table.iterrows():
        if record["quantity"] != "allreduce_busbw":
            continue
        cluster, _ = validation.row_cluster(record)
        size = float(record["message_bytes"])
        rows.append(Row(
            id=record["id"], publication=str(record["source"]).split(" — ")[0],
            cluster=cluster, size=size, measured_GBps=float(record["value"]),
            pair=c.nccl_selection("allreduce", size, cluster),
            in_sample=fits(record["intra_link"], record["gpu"], cluster.nodes)))
    return rows


def constants_from(theta: np.ndarray) -> dict:
    table: dict = {}
    for (link, group, key, _, _), value in zip(PARAMETERS, np.exp(theta), strict=True):
        target = table.setdefault(link, {}).setdefault(group, {})
        if group == "nvls_tree":
            target = target.setdefault(NET, {})
        target[key] = float(value)
    return table


def predict_GBps(row: Row, constants: dict | None) -> float:
    time = c.achieved_time_s("allreduce", row.pair, row.size, row.cluster, constants)
    return c.busbw_Bps("allreduce", row.size, time, row.cluster.world_size) / 1e9


def fit(rows: list[Row]) -> dict:
    from scipy.optimize import least_squares

    per_source = {}
    for row in rows:
        per_source[row.publication] = per_source.get(row.publication, 0) + 1
    weights = np.array([1.0 / math.sqrt(per_source[row.publication]) for row in rows])
    priors = np.log([prior for *_, prior, _ in PARAMETERS])
    prior_weights = np.array([w for *_, w in PARAMETERS])

    def residuals(theta: np.ndarray) -> np.ndarray:
        constants = constants_from(theta)
        errors = [math.log(predict_GBps(row, constants) / row.measured_GBps) for row in rows]
        return np.concatenate([weights * np.array(errors), prior_weights * (theta - priors)])

    result = least_squares(residuals, priors, method="trf", x_scale=1.0)
    return constants_from(result.x)


def error_pct(row: Row, constants: dict | None) -> float:
    return 100.0 * (predict_GBps(row, constants) / row.measured_GBps - 1.0)


def report(title: str, rows: list[Row], constants: dict | None) -> list[float]:
    print(f"\n{title}")
    print(f"  {'id':<4} {'size':>12} {'pair':<18} {'measured':>9} {'predicted':>9} {'error':>8}")
    errors = []
    for row in rows:
        error = error_pct(row, constants)
        errors.append(error)
        print(f"  {row.id:<4} {int(row.size):>12} {'/'.join(row.pair):<18} "
              f"{row.measured_GBps:>9.2f} {predict_GBps(row, constants):>9.2f} {error:>+7.1f}%")
    absolute = np.abs(errors)
    print(f"  median |error| {np.median(absolute):.1f}%, max |error| {absolute.max():.1f}%")
    return errors


def print_constants(table: dict, section: str = "achieved") -> None:
    """The constants as collectives.toml sections, nested tables as dotted names."""
    numbers = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if numbers:
        print(f"[{section}]")
        for key, value in numbers.items():
            print(f"{key} = {value:.4g}")
        print()
    for key, value in table.items():
        if isinstance(value, dict):
            print_constants(value, f"{section}.{key}")


#: The 2019 V100 sweep's sizes that NCCL 2.4 ran as a Simple ring (above its LL threshold
#: of 128 KiB per channel), for the straight-line check below.
V100_2019_SIMPLE_IDS = ("c18", "c19", "c20", "c21", "c22", "c23", "c24")


def line_through(rows: list[Row]) -> tuple[float, float, float]:
    """Least-squares t = latency + 2(p-1)/p * n / busbw through measured times: the
    (latency us, busbw GB/s, largest relative deviation) of the line."""
    p = rows[0].cluster.world_size
    factor = c.BUSBW_FACTORS["allreduce"](p)
    sizes = np.array([row.size for row in rows])
    times = factor * sizes / (np.array([row.measured_GBps for row in rows]) * 1e9)
    slope, intercept = np.polyfit(factor * sizes, times, 1, w=1.0 / times)
    fitted = intercept + slope * factor * sizes
    return intercept * 1e6, 1e-9 / slope, float(np.max(np.abs(fitted / times - 1.0)))


def main() -> None:
    rows = load_rows()
    fitting = [row for row in rows if row.in_sample]
    held_out = [row for row in rows if not row.in_sample]
    constants = fit(fitting)
    print("Fitted constants (data/hardware/collectives.toml [achieved]):\n")
    print_constants(constants)
    stored = copy.deepcopy(c.achieved_constants())
    print("\nStored in collectives.toml:\n")
    print_constants(stored)

    report("Fitting rows (H100 and A100), stored constants", fitting, None)
    report("Out of sample (H200, V100 and two-node A100 rows, never fitted), stored "
           "constants", held_out, None)
    report("Out of sample, constants fitted just now", held_out, constants)

    simple_2019 = [row for row in held_out if row.id in V100_2019_SIMPLE_IDS]
    latency, busbw, worst = line_through(simple_2019)
    print(f"\nV100 2019 sweep, 2-128 MB (NCCL 2.4: Simple ring, no LL128): measured times on "
          f"a line of {latency:.1f} us + n at {busbw:.1f} GB/s busbw, within "
          f"{100 * worst:.1f}%; NCCL 2.5's first tuning table charged a Simple ring of 8 ranks "
          f"8.4 + 14 x 5.7 = {8.4 + 14 * 5.7:.1f} us")

    # Out-of-sample rows whose prediction the fitted constants reach (the H200 rows).
    reached = [row for row in held_out if predict_GBps(row, {}) != predict_GBps(row, None)]
    print("\nLeave one source out: each source predicted by a fit to the others")
    loso = []
    for publication in sorted({row.publication for row in fitting}):
        others = [row for row in fitting if row.publication != publication]
        mine = [row for row in fitting if row.publication == publication]
        constants = fit(others)
        loso += report(f"- held out: {publication}", mine, constants)
        worst = max(abs(error_pct(row, constants)) for row in reached)
        print(f"  (this fit on the out-of-sample rows: max |error| {worst:.1f}%)")
    absolute = np.abs(loso)
    print(f"\nLeave-one-source-out overall: median |error| {np.median(absolute):.1f}%, "
          f"max |error| {absolute.max():.1f}%")


if __name__ == "__main__":
    main()
