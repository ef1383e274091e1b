"""Fit the achieved-time constants of NCCL all-reduce to published nccl-tests runs.

    PYTHONPATH=. python benchmarks/collectives_fit.py

Rows: ``allreduce_busbw`` rows of data/validation/published.csv. The fit uses the h100-sxm
rows only (n01-n33: one-node 8x H100 SXM sweeps and two-node 16x H100 over InfiniBand
NDR); the h200-sxm rows (p49-p53) stay out of sample and are only predicted.

Which (algorithm, protocol) pair a row ran is NCCL's tuner decision
(``collectives.nccl_selection``), which depends on none of the fitted constants; each row
then constrains the constants of its pair. The fitted constants are per hardware (intra-node
link, network link) and per NCCL algorithm/protocol, never per row:

  nvlink4 ring/LL      latency_us, bus_efficiency
  nvlink4 NVLS         launch_us, pipeline_depth, efficiency, step_overhead_us
  nvlink4 NVLS tree    latency_us, efficiency      (per network link: ib-ndr)

Residuals are log(predicted / measured busbw), each source weighted equally, with a weak
pull towards physical priors (NCCL's own latencies and efficiencies) so that a constant
no row constrains (in leave-one-source-out) stays at its prior instead of wandering.

Prints the fitted constants (as they go into data/hardware/collectives.toml), the signed
error of every fitting row, of the out-of-sample rows, and the leave-one-source-out
errors: each source predicted by a fit to the others.
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

FIT_GPU = "h100-sxm"
INTRA = "nvlink4"
NET = "ib-ndr"

#: (group, key, prior, prior weight in log units). Priors: NCCL's own figures where it has
#: one (LL latency 15 us and LL capped at 141 GB/s of the 450 GB/s NVLink4; nvlsEfficiency
#: 0.85 of the 0.875 the link catalog expects of bulk transfers; NVLS tree latency 67 us),
#: two pipeline stages (reduce, then multicast) for NVLS.
PARAMETERS = (
    ("ring_ll", "latency_us", 15.0, 0.05),
    ("ring_ll", "bus_efficiency", 141.0 / 450.0, 0.05),
    ("nvls", "launch_us", 5.0, 0.05),
    ("nvls", "pipeline_depth", 2.0, 0.05),
    ("nvls", "efficiency", 0.85 * 0.875, 0.05),
    ("nvls", "step_overhead_us", 4.0, 0.05),
    ("nvls_tree", "latency_us", 67.0, 0.05),
    ("nvls_tree", "efficiency", 0.85, 0.05),
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
            in_sample=record["gpu"] == FIT_GPU))
    return rows


def constants_from(theta: np.ndarray) -> dict:
    table = {"ring_ll": {}, "nvls": {}, "nvls_tree": {NET: {}}}
    for (group, key, _, _), value in zip(PARAMETERS, np.exp(theta), strict=True):
        target = table["nvls_tree"][NET] if group == "nvls_tree" else table[group]
        target[key] = float(value)
    return {INTRA: table}


def predict_GBps(row: Row, constants: dict | None) -> float:
    time = c.achieved_time_s("allreduce", row.pair, row.size, row.cluster, constants)
    return c.busbw_Bps("allreduce", row.size, time, row.cluster.world_size) / 1e9


def fit(rows: list[Row]) -> dict:
    from scipy.optimize import least_squares

    per_source = {}
    for row in rows:
        per_source[row.publication] = per_source.get(row.publication, 0) + 1
    weights = np.array([1.0 / math.sqrt(per_source[row.publication]) for row in rows])
    priors = np.log([prior for _, _, prior, _ in PARAMETERS])
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


def print_constants(constants: dict) -> None:
    table = constants[INTRA]
    print(f"[achieved.{INTRA}.ring_ll]")
    for key, value in table["ring_ll"].items():
        print(f"{key} = {value:.4g}")
    print(f"\n[achieved.{INTRA}.nvls]")
    for key, value in table["nvls"].items():
        print(f"{key} = {value:.4g}")
    print(f"\n[achieved.{INTRA}.nvls_tree.{NET}]")
    for key, value in table["nvls_tree"][NET].items():
        print(f"{key} = {value:.4g}")


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

    report(f"Fitting rows ({FIT_GPU}), stored constants", fitting, None)
    report("Out of sample (H200 rows, never fitted), stored constants", held_out, None)
    report("Out of sample, constants fitted just now", held_out, constants)

    print("\nLeave one source out: each source predicted by a fit to the others")
    loso = []
    for publication in sorted({row.publication for row in fitting}):
        others = [row for row in fitting if row.publication != publication]
        mine = [row for row in fitting if row.publication == publication]
        constants = fit(others)
        loso += report(f"- held out: {publication}", mine, constants)
        worst = max(abs(error_pct(row, constants)) for row in held_out)
        print(f"  (this fit on the H200 rows: max |error| {worst:.1f}%)")
    absolute = np.abs(loso)
    print(f"\nLeave-one-source-out overall: median |error| {np.median(absolute):.1f}%, "
          f"max |error| {absolute.max():.1f}%")


if __name__ == "__main__":
    main()
