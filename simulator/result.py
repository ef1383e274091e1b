"""What a simulation run returns, and how it is written to disk."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.output import atomic_write_text


def ddlsim_version() -> str:
    try:
        return metadata.version("ddlsim")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class RunResult:
    """Per-iteration records, the update log, a summary and the run's resolved inputs.

    ``iterations``: one row per (iteration, worker) with start_s, compute_s,
    communication_s (exposed: not hidden behind computation), waiting_s (for stragglers,
    barriers, server queues, failed workers) and end_s; the three parts add up to
    ``end_s - start_s``. ``update_log``: :data:`models.emulation.LOG_COLUMNS`, in the
    order the updates take effect. ``staleness``: one sample per push/elastic update.
    """

    iterations: pd.DataFrame
    update_log: pd.DataFrame
    staleness: pd.Series
    summary: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def write(self, directory: Path | str) -> Path:
        """iterations.csv, update_log.csv, staleness.csv, summary.json and meta.json,
        each written whole or not at all."""
        directory = Path(directory)
        atomic_write_text(directory / "iterations.csv", self.iterations.to_csv(index=False))
        atomic_write_text(directory / "update_log.csv", self.update_log.to_csv(index=False))
        atomic_write_text(directory / "staleness.csv",
                          self.staleness.reset_index().to_csv(index=False))
        atomic_write_text(directory / "summary.json", to_json(self.summary))
        atomic_write_text(directory / "meta.json", to_json(self.meta))
        return directory


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars made Python ones, tuples made lists, keys made
    strings and non-finite floats made ``None``: what JSON can hold, compared equal
    after a round trip."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(mapping: Mapping[str, Any]) -> str:
    """Sorted, indented JSON of :func:`json_safe` ``mapping``, newline-terminated."""
    return json.dumps(json_safe(mapping), indent=2, sort_keys=True) + "\n"


def summarize(iterations: pd.DataFrame, staleness: pd.Series, *, workers: int,
              batch_per_gpu: int, samples_processed: int, simulated_time_s: float,
              single_gpu_throughput_samples_per_s: float, synchronous: bool
              ) -> dict[str, Any]:
    """The summary dict of :class:`RunResult` from the per-iteration records.

    Iteration time is ``end_s - start_s`` per record; the breakdown means are per
    record. Scaling efficiency: throughput over ``workers`` times one GPU's
    compute-only throughput.
    """
    duration = (iterations["end_s"] - iterations["start_s"]).to_numpy()
    throughput = samples_processed / simulated_time_s if simulated_time_s > 0 else math.nan

    def mean(column: str) -> float:
        return float(iterations[column].mean()) if len(iterations) else math.nan

    def percentile(q: float) -> float:
        return float(np.percentile(duration, q)) if duration.size else math.nan

    has_staleness = not synchronous and len(staleness) > 0
    return {
        "throughput_samples_per_s": throughput,
        "iteration_time_mean_s": float(duration.mean()) if duration.size else math.nan,
        "iteration_time_p50_s": percentile(50),
        "iteration_time_p90_s": percentile(90),
        "iteration_time_p99_s": percentile(99),
        "compute_s": mean("compute_s"),
        "communication_s": mean("communication_s"),
        "waiting_s": mean("waiting_s"),
        "scaling_efficiency": throughput / (workers * single_gpu_throughput_samples_per_s),
        "staleness_mean": float(staleness.mean()) if has_staleness else None,
        "staleness_p90": float(np.percentile(staleness.to_numpy(), 90))
        if has_staleness else None,
        "staleness_max": int(staleness.max()) if has_staleness else None,
        "simulated_time_s": simulated_time_s,
        "workers": workers,
        "global_batch": workers * batch_per_gpu,
        "samples_processed": samples_processed,
    }
