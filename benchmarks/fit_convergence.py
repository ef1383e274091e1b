"""Refit the critical-batch law to the published points and print the constants.

Run: ``.venv/bin/python benchmarks/fit_convergence.py``. The constants printed here are
the ones stored in ``data/convergence.toml`` (a test holds the two together).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import convergence  # noqa: E402


def fits() -> dict[tuple[str, str, str], convergence.CriticalBatchFit]:
    """One fit per (workload, recipe, target) with at least two batch sizes to fit."""
    points = convergence.convergence_points()
    result = {}
    for key, group in points.groupby(["workload", "recipe", "target"], sort=False):
        if group["value"].nunique() < 2:
            continue  # a flat record (fixed-epoch schedule): no batch penalty to fit
        result[key] = convergence.fit_critical_batch(group)
    return result


def main() -> None:
    print(f"{'workload':<11} {'recipe':<12} {'target':<20} {'unit':<8} {'E_min':>12} "
          f"{'B_noise':>9} {'S_min':>9} {'rms':>6} {'n':>3}")
    points = convergence.convergence_points()
    for (workload, recipe, target), fit in fits().items():
        unit = points[(points.workload == workload) & (points.recipe == recipe)].quantity.iloc[0]
        print(f"{workload:<11} {recipe:<12} {target:<20} {unit:<8} {fit.minimum:12.6g} "
              f"{fit.noise_batch:9.0f} {fit.minimum / fit.noise_batch:9.4g} "
              f"{fit.rms_relative_residual:6.3f} {fit.points:3d}")


if __name__ == "__main__":
    main()
