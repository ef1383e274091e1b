"""Predicted against published single-GPU training throughput.

Run: ``.venv/bin/python benchmarks/compute_validation.py`` (prints one line per row of
``data/validation/published.csv`` whose quantity is throughput on one GPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import catalog, compute, workloads  # noqa: E402


def single_gpu_throughput_rows(table: pd.DataFrame | None = None) -> pd.DataFrame:
    if table is None:
        table = pd.read_csv(catalog.data_dir() / "validation" / "published.csv",
                            dtype={"id": str})
    return table[(table["quantity"] == "throughput") & (table["gpus_total"] == 1)]


def predict_throughput(model: str, gpu_id: str, batch_size: int, precision: str,
                       calibration="auto") -> float:
    """Training samples/s of one GPU, compute only, from the catalogs and the model."""
    return compute.training_throughput_samples_per_s(
        workloads.workload(model), catalog.gpu(gpu_id), int(batch_size), precision,
        calibration)


def compare(table: pd.DataFrame | None = None, calibration="auto") -> pd.DataFrame:
    records = []
    for row in single_gpu_throughput_rows(table).itertuples(index=False):
        predicted = predict_throughput(row.model, row.gpu, row.batch_per_gpu, row.precision,
                                       calibration)
        records.append({"id": row.id, "model": row.model, "gpu": row.gpu,
                        "precision": row.precision, "batch": int(row.batch_per_gpu),
                        "measured": row.value, "predicted": predicted,
                        "error_pct": 100.0 * (predicted - row.value) / row.value})
    return pd.DataFrame(records)


def main() -> int:
    table = compare()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    for gpu_id in sorted(table["gpu"].unique()):
        print(f"{gpu_id}: constants from {compute.compute_constants(catalog.gpu(gpu_id)).source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
