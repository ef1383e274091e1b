"""Fit the compute-jitter sigma of multi-GPU engine predictions to published rows.

    PYTHONPATH=. python benchmarks/jitter_fit.py     (a few minutes: 41 sigmas x 52 rows)

Noise-free engine runs over-predict scaling: on a real cluster each worker's step
varies a little, and every synchronous step waits for the slowest of N workers.
:data:`simulator.validation.COMPUTE_JITTER_SIGMA` is the sigma of a mean-1 log-normal
factor on every worker's compute phase. One value for all rows: it is a property of
shared GPU clusters, not of a row.

Fit rows: every multi-GPU row of data/validation/published.csv whose prediction the
jitter changes and that measures scaling, that is ``throughput`` with gpus_total > 1
and ``scaling_efficiency``. Single-GPU rows are untouched by the jitter (one worker
waits for nobody; see :class:`simulator.validation.Simulations`). The
objective is a robust (soft L1) loss of the log errors, minimised over a grid of sigma (each
row's prediction at each sigma is one engine run with the fixed jitter seed, so the
objective is a deterministic function of sigma). Leave-one-source-out (LOSO): sigma
refitted on every publication but one, that one predicted.

Also printed: the other engine quantities (iteration_time, time_to_train) of multi-GPU
rows at the fitted sigma, which the fit does not see.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compute_fit import LOSS_SCALE  # noqa: E402

from simulator import validation  # noqa: E402

#: Sigmas tried; a plausible jitter is a few percent, and 0.2 is already extreme.
GRID = np.round(np.arange(0.0, 0.2001, 0.005), 4)
FIT_QUANTITIES = ("throughput", "scaling_efficiency")
OTHER_QUANTITIES = ("iteration_time", "time_to_train")


def publication(source: str) -> str:
    return str(source).split(" — ")[0]


def multi_gpu_rows(table: pd.DataFrame, quantities: tuple[str, ...]) -> pd.DataFrame:
    gpus = pd.to_numeric(table["gpus_total"], errors="coerce")
    chosen = table[table["quantity"].isin(quantities)
                   & ((gpus > 1) | (table["quantity"] == "scaling_efficiency"))]
    return chosen.assign(publication=chosen["source"].map(publication))


def log_error_matrix(rows: pd.DataFrame, grid: np.ndarray = GRID) -> pd.DataFrame:
    """log(predicted / measured), one row per table row, one column per sigma."""
    columns = {}
    for sigma in grid:
        simulations = validation.Simulations(jitter_sigma=float(sigma))
        predicted = validation.predict_rows(rows, simulations.predictors()).set_index("id")
        ok = predicted["status"] == "ok"
        columns[float(sigma)] = np.log(predicted["predicted"] / predicted["measured"]).where(ok)
    return pd.DataFrame(columns).dropna()


def objective(errors: pd.DataFrame) -> pd.Series:
    """Per sigma: sum of soft-L1 losses of the log errors, the robust loss of
    compute_fit.py at its scale (about the sum of squares for errors well under
    LOSS_SCALE): a row whose compute the model misses by tens of percent (its single-GPU
    row misses as much) must not buy its error back with jitter that every other row
    then carries."""
    z = (errors / LOSS_SCALE) ** 2
    return (LOSS_SCALE**2 * 2.0 * (np.sqrt(1.0 + z) - 1.0)).sum()


def fit(errors: pd.DataFrame) -> float:
    """The grid sigma of least robust loss of the log errors."""
    return float(objective(errors).idxmin())


def percent(log_error) -> np.ndarray:
    return 100.0 * np.expm1(np.asarray(log_error, dtype=float))


def loso(errors: pd.DataFrame, publications: pd.Series) -> tuple[pd.Series, dict[str, float]]:
    """Each row's log error at the sigma fitted without its publication."""
    held = {}
    sigmas = {}
    for name in sorted(publications.unique()):
        mine = publications.index[publications == name]
        sigma = fit(errors.drop(index=mine))
        sigmas[name] = sigma
        for row_id in mine:
            held[row_id] = errors.loc[row_id, sigma]
    return pd.Series(held), sigmas


def loso_sigmas(table: pd.DataFrame, grid: np.ndarray = GRID) -> dict[str, float]:
    """Publication -> sigma fitted on the fit rows of every other publication."""
    rows = multi_gpu_rows(table, FIT_QUANTITIES)
    errors = log_error_matrix(rows, grid)
    publications = rows.set_index("id").loc[errors.index, "publication"]
    return loso(errors, publications)[1]


def describe(label: str, log_errors: pd.Series) -> str:
    absolute = np.abs(percent(log_errors))
    return (f"{label:<34} median |err| {np.median(absolute):5.2f}%   "
            f"max |err| {absolute.max():5.2f}%   rms log {np.sqrt(np.mean(log_errors**2)):.4f}")


def main() -> int:
    table = validation.load_measurements()
    rows = multi_gpu_rows(table, FIT_QUANTITIES)
    errors = log_error_matrix(rows)
    publications = rows.set_index("id").loc[errors.index, "publication"]
    sigma = fit(errors)
    held, sigmas = loso(errors, publications)

    print(f"Fit rows: {len(errors)} multi-GPU throughput and scaling_efficiency rows from "
          f"{publications.nunique()} publications\n")
    print("Soft-L1 loss of the log errors by sigma:")
    losses = objective(errors)
    for value in GRID[::2]:
        print(f"  sigma {value:.3f}: {losses[float(value)]:.4f}")
    print(f"\nFitted sigma: {sigma:.3f}\n")
    print(describe("noise-free (sigma 0)", errors[0.0]))
    print(describe(f"fitted (sigma {sigma:.3f})", errors[sigma]))
    print(describe("leave one source out", held))
    print("\nLOSO sigmas (publication held out -> sigma fitted on the rest):")
    for name, value in sigmas.items():
        print(f"  {value:.3f}  {name[:90]}")

    detail = pd.DataFrame({
        "quantity": rows.set_index("id").loc[errors.index, "quantity"],
        "noise_free_pct": percent(errors[0.0]),
        "fitted_pct": percent(errors[sigma]),
        "loso_pct": percent(held.loc[errors.index]),
    })
    print("\nRows (signed error, percent):\n")
    print(detail.to_string(float_format=lambda v: f"{v:+.1f}"))
    for quantity in FIT_QUANTITIES:
        subset = detail[detail["quantity"] == quantity]
        print(f"\n{quantity}: median |err| {subset['noise_free_pct'].abs().median():.2f}% -> "
              f"{subset['fitted_pct'].abs().median():.2f}% (LOSO "
              f"{subset['loso_pct'].abs().median():.2f}%), max "
              f"{subset['noise_free_pct'].abs().max():.2f}% -> "
              f"{subset['fitted_pct'].abs().max():.2f}% (LOSO "
              f"{subset['loso_pct'].abs().max():.2f}%)")

    others = multi_gpu_rows(table, OTHER_QUANTITIES)
    if len(others):
        other = log_error_matrix(others, np.array([0.0, sigma]))
        print("\nMulti-GPU rows outside the fit (signed error, percent, sigma 0 -> fitted):")
        for row_id in other.index:
            print(f"  {row_id} {others.set_index('id').loc[row_id, 'quantity']}: "
                  f"{percent(other.loc[row_id, 0.0]):+.1f} -> "
                  f"{percent(other.loc[row_id, sigma]):+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
