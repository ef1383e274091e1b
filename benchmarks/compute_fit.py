"""Joint fit of the compute model's shared efficiency constants to the single-GPU
throughput and iteration-time rows of data/validation/published.csv, with
leave-one-source-out errors.

    PYTHONPATH=. python benchmarks/compute_fit.py

The fitted constants are per kind of matrix unit (tensor cores, SIMT; SIMT
convolutions also per SM design, see defaults.toml), never per row, GPU model or
workload: every single-GPU speed row (``quantity`` ``throughput`` or
``iteration_time``, ``gpus_total == 1``) enters, whatever its GPU or batch, each
predicted under its framework's kernel fusion and for the phases it timed. The
per-iteration host overheads of the frameworks with rows at several batch sizes
(``iteration_overhead_ms``) are fitted with them: an overhead is what tells a step at
16 images from one at 128. The objective is a robust (soft L1, :data:`LOSS`) loss of
the log errors of speed, ``log(predicted / measured)`` for a throughput and
``log(measured / predicted)`` for a time, each row weighted by one over the number of
fitted rows of its model, so that every workload counts the
same (the ResNet-50 rows would otherwise outvote the few Inception-v3, VGG16 or AlexNet
rows, and the constants would describe ResNet-50 alone), plus a weak prior
(:data:`PRIORS`); minimized with ``scipy.optimize.least_squares`` inside physical bounds.
Each prediction is the engine run ``ddlsim validate`` makes, with
``data/calibration/defaults.toml`` replaced by the trial constants.

Layer benchmarks (rows with ``phases = forward+backward``: one forward and one backward
pass timed without the optimizer update; today one source, Lua Torch with cuDNN 5.1 at
16 images on 2016 GeForce and TITAN cards) enter like the training steps.
``--hold-out-layer-benchmarks`` fits the training steps alone and prints the layer
benchmarks as an out-of-sample test.

The Winograd threshold (``gemm.simt.winograd_min_pixels``: output pixels a layer needs
in a batch before it runs Winograd) is a step in the predictions, which a gradient fit
cannot move; ``--threshold-grid`` refits the other constants at each point of
:data:`WINOGRAD_MIN_PIXELS_GRID` and prints the cost, and the point of least cost goes
into defaults.toml. The refits of the leave-one-source-out errors keep it fixed.

Leave one source out (LOSO): for each publication (the source before " — "), the
constants are refitted on the other publications' rows and the held-out rows predicted.
A publication whose rows alone pin a constant (the only SIMT-Winograd evidence, say)
shows how far that constant carries.

Prints the fitted constants, per-row errors before (stored defaults) and after, and the
LOSO errors. Copy the fitted values into defaults.toml by hand; it says where they came
from.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import compute  # noqa: E402
from simulator import validation  # noqa: E402

#: The fitted constants: (path in defaults.toml, lower bound, upper bound).
PARAMETERS: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("gemm", "tensor", "peak_fraction"), 0.3, 1.0),
    (("gemm", "tensor", "conv_fraction"), 0.3, 1.0),
    (("gemm", "simt", "conv_fraction"), 0.3, 1.0),
    (("gemm", "simt", "winograd_reduction"), 1.0, 4.0),
    (("gemm", "simt", "conv_fraction_unified_l1"), 0.3, 1.0),
    (("gemm", "simt", "conv_fraction_smx"), 0.1, 1.0),
    (("iteration_overhead_ms", "tensorflow"), 0.0, 100.0),
    (("iteration_overhead_ms", "mxnet-module"), 0.0, 100.0),
)
#: Library figures each efficiency constant is pulled toward when the rows do not pin
#: it (a source held out that alone separates two constants, say): large square cuBLAS
#: HGEMMs at 0.85 of the tensor peak, convolutions at the GEMM rate, cuDNN's F(2x2,3x3)
#: Winograd at 2.25 times fewer multiplies, and Kepler's SMX at 1/1.35 of that rate
#: (NVIDIA's GM107 Maxwell whitepaper, 2014: the Maxwell SM delivers about 35% more
#: performance per CUDA core than Kepler's). Each enters as one residual ``PRIOR_WEIGHT *
#: log(value / prior)``: a fraction of one row's pull, so that rows that do pin a
#: constant decide it. A per-iteration overhead is pulled toward none, as
#: ``PRIOR_WEIGHT * overhead / OVERHEAD_PRIOR_SCALE_MS``.
PRIORS = np.array([0.85, 1.0, 1.0, 2.25, 1.0, 1.0 / 1.35])
PRIOR_WEIGHT = 0.1
OVERHEAD_PRIOR_SCALE_MS = 100.0
#: Where the overheads start in :data:`PARAMETERS`.
FIRST_OVERHEAD = len(PRIORS)
#: The Winograd threshold (output pixels per batch, defaults.toml), chosen on a grid
#: (``--threshold-grid``) rather than by the gradient fit: predictions step where it
#: crosses a layer's size. The grid brackets the layer sizes of the fit rows: 14x14 maps
#: at 16 images are 3136 pixels, 8x8 at 64 are 4096, 14x14 at 32 are 6272.
WINOGRAD_MIN_PIXELS = ("gemm", "simt", "winograd_min_pixels")
WINOGRAD_MIN_PIXELS_GRID = (0, 2000, 3500, 4000, 5000, 7000, 10000, 20000)


#: Robust loss of the fit (scipy's ``soft_l1``): quadratic for log errors well under
#: ``LOSS_SCALE`` (about 10%), growing only linearly beyond, so that one row the model
#: cannot explain (an input-bound benchmark, say) does not drag the constants every
#: other row shares.
LOSS = "soft_l1"
LOSS_SCALE = 0.1


#: The single-GPU quantities fitted, and the sign that turns the log error of each into
#: that of a speed (a time predicted short is a speed predicted high).
SPEED_QUANTITIES = {"throughput": 1.0, "iteration_time": -1.0}


def publication(source: str) -> str:
    return str(source).split(" — ")[0]


def speed_rows(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every single-GPU throughput and iteration-time row, with its publication."""
    table = validation.load_measurements() if table is None else table
    rows = table[table["quantity"].isin(SPEED_QUANTITIES)
                 & (table["gpus_total"] == 1)].copy()
    rows["publication"] = rows["source"].map(publication)
    return rows


def is_layer_benchmark(rows: pd.DataFrame) -> pd.Series:
    """Rows that timed forward and backward passes only (``phases`` column)."""
    if "phases" not in rows.columns:
        return pd.Series(False, index=rows.index)
    timed = rows["phases"].fillna("step").astype(str).str.strip()
    return timed.isin([phases for phases in validation.PHASES if phases != "step"])


def fit_rows(table: pd.DataFrame | None = None, layer_benchmarks: bool = True
             ) -> pd.DataFrame:
    """The rows the constants are fitted to: whole training steps, and the layer
    benchmarks unless ``layer_benchmarks`` is false."""
    rows = speed_rows(table)
    return rows if layer_benchmarks else rows[~is_layer_benchmark(rows)]


def defaults_with(values: np.ndarray, min_pixels: float | None = None) -> dict:
    """defaults.toml's content with the fitted constants replaced by ``values`` and,
    when given, the Winograd threshold by ``min_pixels``."""
    table = copy.deepcopy(compute.defaults_table())
    replaced = list(zip((path for path, _, _ in PARAMETERS), values, strict=True))
    if min_pixels is not None:
        replaced.append((WINOGRAD_MIN_PIXELS, min_pixels))
    for path, value in replaced:
        node = table
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = float(value)
    return table


def stored_values() -> np.ndarray:
    table = compute.defaults_table()
    values = []
    for path, _, _ in PARAMETERS:
        node = table
        for key in path:
            node = node[key]
        values.append(float(node))
    return np.array(values)


def log_errors(values: np.ndarray, rows: pd.DataFrame, min_pixels: float | None = None
               ) -> np.ndarray:
    table = defaults_with(values, min_pixels)
    simulations = validation.Simulations(
        calibration=lambda gpu: compute.default_constants(gpu, table))
    predictors = simulations.predictors()
    return np.array([SPEED_QUANTITIES[row["quantity"]]
                     * np.log(predictors[row["quantity"]](row).value / row["value"])
                     for _, row in rows.iterrows()])


def weighted_log_errors(values: np.ndarray, rows: pd.DataFrame,
                        min_pixels: float | None = None) -> np.ndarray:
    weights = 1.0 / rows.groupby("model")["model"].transform("size").to_numpy()
    return np.sqrt(weights) * log_errors(values, rows, min_pixels)


def fit_residuals(values: np.ndarray, rows: pd.DataFrame, min_pixels: float | None = None
                  ) -> np.ndarray:
    return np.concatenate([weighted_log_errors(values, rows, min_pixels),
                           PRIOR_WEIGHT * np.log(values[:FIRST_OVERHEAD] / PRIORS),
                           PRIOR_WEIGHT * values[FIRST_OVERHEAD:] / OVERHEAD_PRIOR_SCALE_MS])


def fit(rows: pd.DataFrame, start: np.ndarray | None = None,
        min_pixels: float | None = None) -> np.ndarray:
    return fit_with_cost(rows, start, min_pixels)[0]


def fit_with_cost(rows: pd.DataFrame, start: np.ndarray | None = None,
                  min_pixels: float | None = None) -> tuple[np.ndarray, float]:
    """Fitted constants, and the robust cost they reach (scipy's ``cost``)."""
    from scipy.optimize import least_squares

    lower = np.array([low for _, low, _ in PARAMETERS])
    upper = np.array([high for _, _, high in PARAMETERS])
    start = stored_values() if start is None else start
    start = np.clip(start, lower + 1e-6, upper - 1e-6)
    result = least_squares(fit_residuals, start, bounds=(lower, upper),
                           args=(rows, min_pixels), diff_step=1e-3, xtol=1e-6, ftol=1e-8,
                           loss=LOSS, f_scale=LOSS_SCALE)
    return result.x, float(result.cost)


def threshold_grid(rows: pd.DataFrame, test_rows: pd.DataFrame) -> None:
    """The Winograd threshold is a step in the model, which a gradient fit cannot move:
    refit the other constants at each point of :data:`WINOGRAD_MIN_PIXELS_GRID` and print
    the robust cost, for the threshold of least cost to go into defaults.toml."""
    print("Winograd threshold grid (other constants refitted at each point):\n")
    for min_pixels in WINOGRAD_MIN_PIXELS_GRID:
        values, cost = fit_with_cost(rows, min_pixels=min_pixels)
        fitted = np.abs(percent(log_errors(values, rows, min_pixels)))
        line = (f"  winograd_min_pixels {min_pixels:>6g}: cost {cost:.5f}, fit rows median "
                f"|error| {np.median(fitted):.1f}% (max {fitted.max():.1f}%)")
        if len(test_rows):
            held = np.abs(percent(log_errors(values, test_rows, min_pixels)))
            line += f"; held out median {np.median(held):.1f}% (max {held.max():.1f}%)"
        print(line + "; constants " + ", ".join(f"{v:.3f}" for v in values), flush=True)


def percent(log_error: np.ndarray) -> np.ndarray:
    return 100.0 * np.expm1(log_error)


def main() -> int:
    rows = fit_rows(layer_benchmarks="--hold-out-layer-benchmarks" not in sys.argv)
    test_rows = speed_rows().drop(rows.index)
    if "--threshold-grid" in sys.argv:
        threshold_grid(rows, test_rows)
        return 0
    before = percent(log_errors(stored_values(), rows))
    fitted = fit(rows)
    after = percent(log_errors(fitted, rows))

    print(f"Fit rows: {len(rows)} single-GPU throughput and iteration-time rows from "
          f"{rows['publication'].nunique()} publications\n")
    print("Constants (stored -> fitted):")
    for (path, low, high), old, new in zip(PARAMETERS, stored_values(), fitted, strict=True):
        print(f"  {'.'.join(path):28s} {old:.4f} -> {new:.4f}   (bounds {low:g}..{high:g})")

    loso = pd.Series(np.nan, index=rows.index)
    print("\nLeave one source out:")
    for held_out, group in rows.groupby("publication") if "--no-loso" not in sys.argv else ():
        kept = rows.drop(group.index)
        refit = fit(kept, start=fitted)
        loso[group.index] = percent(log_errors(refit, group))
        shown = ", ".join(f"{v:.3f}" for v in refit)
        print(f"  without {held_out[:60]:60s} ({len(group)} rows): [{shown}]")

    report = pd.DataFrame({
        "id": rows["id"], "model": rows["model"], "precision": rows["precision"],
        "gpu": rows["gpu"], "batch": rows["batch_per_gpu"],
        "publication": rows["publication"].str[:40], "measured": rows["value"],
        "before_pct": before, "after_pct": after, "loso_pct": loso.to_numpy(),
    })
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print("\nPer row (speed error percent; negative = predicted slower than measured):\n")
        print(report.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    for label, reduce in (("Median", np.median), ("Max", np.max)):
        figures = [reduce(np.abs(np.asarray(e))) for e in (before, after, loso)]
        print(f"{label} |error|: before {figures[0]:.1f}%, after {figures[1]:.1f}%, "
              f"LOSO {figures[2]:.1f}%")
    if len(test_rows):
        test_before = percent(log_errors(stored_values(), test_rows))
        test_after = percent(log_errors(fitted, test_rows))
        test = pd.DataFrame({
            "id": test_rows["id"], "model": test_rows["model"], "gpu": test_rows["gpu"],
            "batch": test_rows["batch_per_gpu"], "measured": test_rows["value"],
            "before_pct": test_before, "after_pct": test_after,
        })
        with pd.option_context("display.width", 200, "display.max_rows", 200):
            print(f"\nHeld out of the fit ({len(test_rows)} layer-benchmark rows), predicted "
                  "with the constants (speed error percent):\n")
            print(test.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        print(f"Held out: median |error| before {np.median(np.abs(test_before)):.1f}%, "
              f"after {np.median(np.abs(test_after)):.1f}%; max before "
              f"{np.max(np.abs(test_before)):.1f}%, after {np.max(np.abs(test_after)):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
