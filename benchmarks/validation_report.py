"""Every row of data/validation/published.csv against the accuracy bar, with
leave-one-source-out (LOSO) errors.

    PYTHONPATH=. python benchmarks/validation_report.py

The bar: median |error| <= 10% for throughput and iteration time, <= 15% for all-reduce
bus bandwidth, and no row worse than 25%. It is printed, not enforced.

LOSO: whatever is fitted is refitted on every source but one, and that source is
predicted. A source is the publication before " — " in the source column. What is
fitted, and so refitted here:

- allreduce_busbw: the achieved-time constants of NCCL all-reduce
  (data/hardware/collectives.toml [achieved]), fitted by benchmarks/collectives_fit.py
  to the h100-sxm nccl-tests rows. Each of those sources is predicted by a refit to the
  others; the h200-sxm rows never enter the fit, so their LOSO error is the plain error.
- throughput, iteration_time, scaling_efficiency, time_to_train: the compute model's
  shared efficiency constants (tensor-core GEMM fraction, convolution fractions,
  Winograd reduction; data/calibration/defaults.toml), fitted by
  benchmarks/compute_fit.py to the single-GPU speed rows (throughput and iteration
  time, training steps and layer benchmarks; the Winograd threshold, chosen on a grid,
  stays fixed in the refits). A source holding some of those rows is
  predicted, all its quantities, with the constants refitted on the other sources' rows.
  Nothing else in these predictions is fitted to this file: the other compute constants
  are datasheet derating, the NCCL constants come from nccl-tests sources only, and the
  convergence law is fitted to the MLPerf reference convergence points
  (data/convergence_points.csv).
- The same engine quantities of multi-GPU rows: the compute-jitter sigma
  (simulator.validation.COMPUTE_JITTER_SIGMA), fitted by benchmarks/jitter_fit.py to
  the multi-GPU throughput and scaling_efficiency rows. A source is predicted with
  sigma refitted on the other sources' rows (on :data:`LOSO_SIGMA_GRID`, which holds
  every refit jitter_fit.py finds) and, when it holds single-GPU fit rows, the compute
  constants refitted too.

For sources without any fitted row the LOSO error equals the plain error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import collectives_fit  # noqa: E402
import compute_fit  # noqa: E402
import jitter_fit  # noqa: E402

from models import compute  # noqa: E402
from simulator import validation  # noqa: E402

#: Largest median |error| per quantity, percent; quantities not listed have no median bar.
MEDIAN_BAR_PCT = {"throughput": 10.0, "iteration_time": 10.0, "allreduce_busbw": 15.0}
#: No row may be worse than this, percent.
ROW_BAR_PCT = 25.0
ENGINE_QUANTITIES = ("throughput", "iteration_time", "scaling_efficiency", "time_to_train")
#: Sigmas tried by the jitter refits: jitter_fit.py's grid up to 0.06, well above every
#: leave-one-source-out refit it prints (and quicker than its whole grid).
LOSO_SIGMA_GRID = np.round(np.arange(0.0, 0.0601, 0.005), 4)


def publication(source: str) -> str:
    return str(source).split(" — ")[0]


def loso_engine(table: pd.DataFrame, plain: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    """Engine quantities: the compute constants of benchmarks/compute_fit.py refitted on
    the single-GPU speed rows of every publication but one, and the jitter sigma of
    benchmarks/jitter_fit.py on its multi-GPU rows, that publication predicted."""
    notes = []
    fitting = compute_fit.fit_rows(table)
    sigmas = jitter_fit.loso_sigmas(table, LOSO_SIGMA_GRID)
    errors = {}
    engine = table[table["quantity"].isin(ENGINE_QUANTITIES)]
    for held_out, rows in engine.groupby(engine["source"].map(publication)):
        kept = fitting[fitting["publication"] != held_out]
        # A publication without jitter-fit rows leaves the all-rows fit unchanged.
        sigma = sigmas.get(held_out, validation.COMPUTE_JITTER_SIGMA)
        refit_sigma = abs(sigma - validation.COMPUTE_JITTER_SIGMA) > 1e-12
        if len(kept) == len(fitting) and not refit_sigma:
            for row_id in rows["id"]:
                errors[row_id] = plain.loc[row_id, "error_pct"]
            continue
        calibration: object = "auto"
        refits = []
        if len(kept) < len(fitting):
            values = compute_fit.fit(kept)
            refits.append(f"compute constants refitted on the other {len(kept)} single-GPU "
                          "speed rows: " + ", ".join(
                              f"{'.'.join(path[1:])}={value:.3g}"
                              for (path, _, _), value in zip(compute_fit.PARAMETERS, values,
                                                             strict=True)))
            constants = compute_fit.defaults_with(values)

            def calibration(gpu, constants=constants):
                return compute.default_constants(gpu, constants)
        if held_out in sigmas:
            refits.append(f"jitter sigma refitted on the other sources: {sigma:.3f}")
        notes.append(f"held out {held_out[:70]}: " + "; ".join(refits))
        simulations = validation.Simulations(calibration=calibration, jitter_sigma=sigma)
        predicted = validation.predict_rows(rows, simulations.predictors()).set_index("id")
        errors.update(predicted["error_pct"].to_dict())
    return errors, notes


def loso_busbw(plain: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    rows = collectives_fit.load_rows()
    fitting = [row for row in rows if row.in_sample]
    errors = {row.id: plain.loc[row.id, "error_pct"] for row in rows if not row.in_sample}
    notes = []
    for held_out in sorted({row.publication for row in fitting}):
        constants = collectives_fit.fit([row for row in fitting if row.publication != held_out])
        mine = [row for row in fitting if row.publication == held_out]
        for row in mine:
            errors[row.id] = collectives_fit.error_pct(row, constants)
        notes.append(f"held out {held_out[:70]}: NCCL achieved-time constants refitted on "
                     f"the other {len(fitting) - len(mine)} H100 and A100 rows")
    return errors, notes


def throughput_breakdown(table: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """Median signed throughput error by model and precision, with the share of each
    model's convolution FLOP in 3x3 stride-1 layers (the ones cuDNN may run with
    Winograd's reduced arithmetic in fp32)."""
    from models.workloads import workload

    merged = ok[ok["quantity"] == "throughput"].merge(
        table[["id", "model", "precision"]], on="id")
    records = []
    for (model, precision), group in merged.groupby(["model", "precision"]):
        records.append({"model": model, "precision": precision, "rows": len(group),
                        "median_error_pct": group["error_pct"].median(),
                        "conv_3x3_stride1_share": winograd_share(workload(model))})
    return pd.DataFrame(records).sort_values(["precision", "median_error_pct"])


def winograd_share(model) -> float:
    """Share of the convolution FLOP the fp32 compute model runs with Winograd's reduced
    arithmetic (the layers models.compute marks so)."""
    total = eligible = 0.0
    for layer in model.layers:
        if layer.kind != "conv":
            continue
        total += layer.forward_flops
        if compute.winograd_eligible(layer):
            eligible += layer.forward_flops
    return eligible / total if total else float("nan")


def summary_against_bar(rows: pd.DataFrame) -> pd.DataFrame:
    records = []
    for quantity in validation.QUANTITIES:
        subset = rows[rows["quantity"] == quantity]
        if subset.empty:
            continue
        scored = subset[subset["status"] == "ok"]
        absolute = scored["error_pct"].abs()
        loso = scored["loso_error_pct"].abs()
        median = absolute.median() if len(scored) else np.nan
        worst = scored.loc[absolute.idxmax()] if len(scored) else None
        bar = MEDIAN_BAR_PCT.get(quantity)
        over = int((absolute > ROW_BAR_PCT).sum())
        verdict = []
        if bar is not None:
            verdict.append(f"median {'<=' if median <= bar else '>'} {bar:g}%")
        verdict.append(f"{over} row(s) > {ROW_BAR_PCT:g}%")
        records.append({
            "quantity": quantity, "rows": len(subset), "predicted": len(scored),
            "median_abs_pct": median,
            "p90_abs_pct": absolute.quantile(0.9) if len(scored) else np.nan,
            "worst": None if worst is None else f"{worst['id']} {worst['error_pct']:+.1f}%",
            "loso_median_abs_pct": loso.median() if len(scored) else np.nan,
            "loso_max_abs_pct": loso.max() if len(scored) else np.nan,
            "bar": "; ".join(verdict),
            "meets_bar": (bar is None or median <= bar) and over == 0,
        })
    return pd.DataFrame(records)


def main() -> int:
    table = validation.load_measurements()
    rows = validation.predict_rows(table)
    plain = rows.set_index("id")
    engine_loso, engine_notes = loso_engine(table, plain)
    busbw_loso, busbw_notes = loso_busbw(plain)
    loso = {**engine_loso, **busbw_loso}
    rows["loso_error_pct"] = rows["id"].map(loso)
    rows["publication"] = rows["source"].map(lambda s: publication(s)[:48])

    with pd.option_context("display.width", 220, "display.max_colwidth", 60,
                           "display.max_rows", 500):
        ok = rows[rows["status"] == "ok"]
        print("Rows (error and leave-one-source-out error, percent):\n")
        print(ok[["id", "quantity", "publication", "measured", "predicted", "error_pct",
                  "loso_error_pct"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        unsupported = rows[rows["status"] != "ok"]
        if len(unsupported):
            print("\nUnsupported rows:\n")
            for _, row in unsupported.iterrows():
                print(f"  {row['id']} {row['quantity']}: {row['status'][:160]}")
        print("\nLeave one source out:")
        for note in engine_notes + busbw_notes:
            print(f"  {note}")
        print("  everything else: nothing fitted to these rows, LOSO = plain error")
        print(f"\nSummary against the bar (median <= 10% throughput and iteration time, "
              f"<= 15% bus bandwidth; no row > {ROW_BAR_PCT:g}%):\n")
        summary = summary_against_bar(rows)
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print("\nThroughput error by model and precision (where the compute model misses):\n")
        print(throughput_breakdown(table, ok).to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))
        worse = ok[ok["error_pct"].abs() > ROW_BAR_PCT]
        print(f"\nRows worse than {ROW_BAR_PCT:g}%: {len(worse)} of {len(ok)}")
        for quantity, subset in worse.groupby("quantity"):
            listed = ", ".join(f"{r.id} {r.error_pct:+.0f}%" for r in subset.itertuples())
            print(f"  {quantity}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
