"""Fitting calibration measurements into the constants the cost models read.

Pure functions of the measurement records (plain dicts, as the harness writes them and
as ``data/calibration/<gpu-id>.json`` stores them); no CuPy here, so the fits run and are
tested on any machine.

Two curves cover everything the harness times:

* a latency-bandwidth line, ``seconds = latency_s + size / bandwidth``, for memory
  streaming, host copies, the optimizer update, peer copies and all-reduce, and for the
  launch chain (``seconds = a + kernels * kernel_launch_s``);
* the saturating efficiency of :mod:`models.efficiency` for GEMMs against FLOP, relative
  to the catalog's matrix peak for the precision.

The two are the same law: a kernel of size ``n`` that takes ``a + n / B`` reaches
``B * n / (n + a * B)``, the saturating curve with asymptote ``B`` and half work
``a * B``. Both are fitted by least squares on *relative* residuals, so a 4 KiB copy
counts as much as a 1 GiB one (absolute residuals would let the largest size alone set
the intercept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from models.efficiency import saturating_efficiency
from models.errors import ConfigError
from models.hardware import GPUSpec

SCHEMA_VERSION = 1

#: Bytes of DRAM traffic per fp32 element: copy reads and writes one array, triad reads
#: two and writes one (the STREAM convention, write-allocate not counted).
STREAM_BYTES_PER_ELEMENT = {"copy": 8, "triad": 12}

#: Fused SGD-momentum traffic per fp32 parameter: read param, grad, momentum buffer;
#: write param and momentum buffer.
SGD_BYTES_PER_PARAM = 20

GEMM_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")

#: Fields of each measurement record, as CALIBRATION_SCHEMA.md defines them.
MEASUREMENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "memory": ("kernel", "size_bytes", "seconds", "bytes_per_s"),
    "launch": ("kind", "kernels", "seconds_per_kernel"),
    "gemm": ("impl", "precision", "m", "n", "k", "seconds", "flops_per_s"),
    "optimizer": ("params", "seconds", "bytes_per_s"),
    "host_copy": ("direction", "memory", "size_bytes", "seconds"),
    "p2p": ("src", "dst", "size_bytes", "seconds", "bytes_per_s"),
    "allreduce": ("gpus", "size_bytes", "seconds", "algbw_Bps", "busbw_Bps"),
}

PROVENANCE_FIELDS = ("device_name", "compute_capability", "driver_version",
                     "cuda_runtime_version", "cupy_version", "date_utc", "command", "host")

CONSTANT_FIELDS = ("memory_bandwidth_Bps", "memory_half_bytes", "kernel_launch_s", "gemm",
                   "optimizer_update_Bps", "host_to_device_Bps", "host_latency_s",
                   "p2p_bandwidth_Bps", "allreduce")


@dataclass(frozen=True)
class LineFit:
    """``seconds = latency_s + size / bandwidth_per_s`` (size in bytes, kernels, ...)."""

    latency_s: float
    bandwidth_per_s: float
    points: int

    @property
    def half_size(self) -> float:
        """Size at which half the asymptotic bandwidth is reached."""
        return self.latency_s * self.bandwidth_per_s


@dataclass(frozen=True)
class GemmFit:
    """:func:`models.efficiency.saturating_efficiency` parameters for one precision."""

    peak_fraction: float
    half_work_flop: float
    points: int


def _positive_array(field: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ConfigError(field, list(values), "a list of finite numbers > 0")
    return array


def _enough_sizes(field: str, sizes: np.ndarray) -> None:
    if np.unique(sizes).size < 2:
        raise ConfigError(field, sizes.tolist(),
                          "at least two distinct sizes (a line needs two points)")


def fit_latency_bandwidth(sizes: Sequence[float], seconds: Sequence[float],
                          field: str = "measurements") -> LineFit:
    """Least-squares ``seconds = latency + size / bandwidth`` on relative residuals.

    The latency is bounded below by zero: a negative one would mean small transfers
    beat the asymptote (cache effects), which the line cannot represent.
    """
    size = _positive_array(f"{field}.size", sizes)
    time = _positive_array(f"{field}.seconds", seconds)
    if size.size != time.size:
        raise ConfigError(f"{field}.seconds", len(time),
                          f"as many times as sizes ({len(size)})")
    _enough_sizes(f"{field}.size", size)
    # Scaled to O(1) so that the optimizer's tolerances mean the same for microsecond
    # latencies and 10^12 bytes/s bandwidths.
    size_scale, time_scale = size.max(), time.max()
    x, y = size / size_scale, time / time_scale
    slope0, intercept0 = np.polyfit(x, y, 1, w=1 / y)
    p0 = [max(intercept0, 1e-6), max(slope0, 1e-6)]
    (intercept, slope), _ = curve_fit(lambda s, a, b: a + b * s, x, y, p0=p0, sigma=y,
                                      bounds=([0.0, 0.0], [np.inf, np.inf]))
    if slope <= 0:
        raise ConfigError(f"{field}.seconds", time.tolist(), "times that grow with size")
    return LineFit(latency_s=float(intercept * time_scale),
                   bandwidth_per_s=float(size_scale / (slope * time_scale)),
                   points=int(size.size))


def fit_gemm_efficiency(flop: Sequence[float], flops_per_s: Sequence[float],
                        peak_flops_per_s: float, field: str = "gemm") -> GemmFit:
    """Fit :func:`saturating_efficiency` to achieved FLOP/s over ``peak_flops_per_s``.

    A fitted asymptote above the catalog peak is an error, not clamped: it means the
    catalog peak is wrong for this GPU or the GEMM ran at another precision than labelled
    (fp32 silently on TF32 tensor cores, for instance).
    """
    work = _positive_array(f"{field}.flop", flop)
    rate = _positive_array(f"{field}.flops_per_s", flops_per_s)
    if work.size != rate.size:
        raise ConfigError(f"{field}.flops_per_s", len(rate),
                          f"as many rates as GEMMs ({len(work)})")
    _enough_sizes(f"{field}.flop", work)
    efficiency = rate / peak_flops_per_s
    scale = work.max()
    guess_fraction = float(efficiency.max())
    (fraction, half), _ = curve_fit(saturating_efficiency, work / scale, efficiency,
                                    p0=[guess_fraction, 0.1], sigma=efficiency,
                                    bounds=([0.0, 0.0], [np.inf, np.inf]))
    if not 0 < fraction <= 1:
        raise ConfigError(f"{field}.peak_fraction", float(fraction),
                          f"a fraction in (0, 1] of the catalog peak {peak_flops_per_s:.4g} "
                          "FLOP/s; check the catalog entry and the precision the GEMMs ran at")
    return GemmFit(peak_fraction=float(fraction), half_work_flop=float(half * scale),
                   points=int(work.size))


def check_records(measurements: Mapping[str, Any]) -> None:
    """Every section present, every record with its fields, every number finite."""
    if not isinstance(measurements, Mapping):
        raise ConfigError("measurements", measurements, "a table of record lists")
    for section, fields in MEASUREMENT_FIELDS.items():
        records = measurements.get(section)
        if not isinstance(records, list):
            raise ConfigError(f"measurements.{section}", records, "a list of records")
        for index, record in enumerate(records):
            where = f"measurements.{section}[{index}]"
            if not isinstance(record, Mapping):
                raise ConfigError(where, record, "a record (table)")
            for name in fields:
                if name not in record:
                    raise ConfigError(f"{where}.{name}", None, "a value (the field is required)")
                value = record[name]
                if isinstance(value, bool) or (isinstance(value, float) and
                                               not math.isfinite(value)):
                    raise ConfigError(f"{where}.{name}", value, "a finite number or a name")
    for index, record in enumerate(measurements["gemm"]):
        if record["precision"] not in GEMM_PRECISIONS:
            raise ConfigError(f"measurements.gemm[{index}].precision", record["precision"],
                              "one of " + ", ".join(GEMM_PRECISIONS))


def _line(records: list[Mapping[str, Any]], size_key: str, field: str) -> LineFit:
    return fit_latency_bandwidth([r[size_key] for r in records], [r["seconds"] for r in records],
                                 field)


def fit_constants(measurements: Mapping[str, Any], gpu: GPUSpec) -> dict[str, Any]:
    """The ``constants`` section of a calibration file from its ``measurements``."""
    check_records(measurements)
    memory = _line(measurements["memory"], "size_bytes", "measurements.memory")

    chain = [r for r in measurements["launch"] if r["kind"] == "chain"]
    launch = fit_latency_bandwidth([r["kernels"] for r in chain],
                                   [r["kernels"] * r["seconds_per_kernel"] for r in chain],
                                   "measurements.launch[kind=chain]")

    gemm: dict[str, dict[str, float]] = {}
    library = [r for r in measurements["gemm"] if r["impl"] == "cublas"]
    for precision in GEMM_PRECISIONS:
        rows = [r for r in library if r["precision"] == precision]
        if not rows or precision not in gpu.matrix_flops_per_s:
            continue
        fit = fit_gemm_efficiency([2 * r["m"] * r["n"] * r["k"] for r in rows],
                                  [r["flops_per_s"] for r in rows],
                                  gpu.matrix_peak_flops_per_s(precision),
                                  f"measurements.gemm[{precision}]")
        gemm[precision] = {"peak_fraction": fit.peak_fraction,
                           "half_work_flop": fit.half_work_flop}

    optimizer = fit_latency_bandwidth(
        [SGD_BYTES_PER_PARAM * r["params"] for r in measurements["optimizer"]],
        [r["seconds"] for r in measurements["optimizer"]], "measurements.optimizer")

    host = {}
    for memory_kind in ("pinned", "pageable"):
        rows = [r for r in measurements["host_copy"]
                if r["direction"] == "h2d" and r["memory"] == memory_kind]
        host[memory_kind] = _line(rows, "size_bytes", f"measurements.host_copy[h2d,{memory_kind}]")

    p2p = measurements["p2p"]
    p2p_bandwidth = (_line(p2p, "size_bytes", "measurements.p2p").bandwidth_per_s
                     if p2p else None)

    return {
        "memory_bandwidth_Bps": memory.bandwidth_per_s,
        "memory_half_bytes": memory.half_size,
        "kernel_launch_s": 1.0 / launch.bandwidth_per_s,
        "gemm": gemm,
        "optimizer_update_Bps": optimizer.bandwidth_per_s,
        "host_to_device_Bps": {kind: fit.bandwidth_per_s for kind, fit in host.items()},
        # Pinned memory: the DMA engine's own start-up, without the staging copy that
        # pageable transfers add.
        "host_latency_s": host["pinned"].latency_s,
        "p2p_bandwidth_Bps": p2p_bandwidth,
        "allreduce": fit_allreduce(measurements["allreduce"]),
    }


def fit_allreduce(records: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Alpha-beta fit of NCCL all-reduce in nccl-tests terms, or None without records.

    nccl-tests' bus bandwidth moves ``2 (n - 1) / n`` times the buffer per GPU, so the
    line is fitted on those bytes and its slope is the bus bandwidth.
    """
    if not records:
        return None
    counts = {r["gpus"] for r in records}
    if len(counts) != 1:
        raise ConfigError("measurements.allreduce.gpus", sorted(counts),
                          "one GPU count for every record")
    gpus = counts.pop()
    bus_bytes = [2 * (gpus - 1) / gpus * r["size_bytes"] for r in records]
    fit = fit_latency_bandwidth(bus_bytes, [r["seconds"] for r in records],
                                "measurements.allreduce")
    return {"gpus": gpus, "latency_s": fit.latency_s, "bus_bandwidth_Bps": fit.bandwidth_per_s}


def calibration_document(gpu: GPUSpec, measurements: Mapping[str, Any],
                         provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The whole calibration file: raw measurements, fitted constants, provenance."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "gpu_id": gpu.id,
        "provenance": dict(provenance),
        "measurements": {section: list(measurements[section]) for section in MEASUREMENT_FIELDS},
        "constants": fit_constants(measurements, gpu),
    }
    check_calibration(document)
    return document


def _require_positive(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(field, value, "a finite number > 0")


def check_calibration(document: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless ``document`` follows CALIBRATION_SCHEMA.md.

    ``provenance`` may carry more than the required fields (the harness adds
    ``skipped``: what it could not measure on this machine, and why).
    """
    expected = {"schema_version", "gpu_id", "provenance", "measurements", "constants"}
    if not isinstance(document, Mapping) or set(document) != expected:
        keys = sorted(document) if isinstance(document, Mapping) else document
        raise ConfigError("calibration", keys, "exactly the keys " + ", ".join(sorted(expected)))
    if document["schema_version"] != SCHEMA_VERSION:
        raise ConfigError("calibration.schema_version", document["schema_version"],
                          str(SCHEMA_VERSION))
    if not isinstance(document["gpu_id"], str) or not document["gpu_id"]:
        raise ConfigError("calibration.gpu_id", document["gpu_id"], "a catalog GPU id")
    provenance = document["provenance"]
    for name in PROVENANCE_FIELDS:
        if not isinstance(provenance, Mapping) or not isinstance(provenance.get(name), str):
            raise ConfigError(f"calibration.provenance.{name}",
                              provenance.get(name) if isinstance(provenance, Mapping) else None,
                              "a string")
    check_records(document["measurements"])

    constants = document["constants"]
    if not isinstance(constants, Mapping) or set(constants) != set(CONSTANT_FIELDS):
        raise ConfigError("calibration.constants",
                          sorted(constants) if isinstance(constants, Mapping) else constants,
                          "exactly the keys " + ", ".join(CONSTANT_FIELDS))
    for name in ("memory_bandwidth_Bps", "memory_half_bytes", "kernel_launch_s",
                 "optimizer_update_Bps", "host_latency_s"):
        _require_positive(f"calibration.constants.{name}", constants[name])
    gemm = constants["gemm"]
    if not isinstance(gemm, Mapping) or not gemm:
        raise ConfigError("calibration.constants.gemm", gemm,
                          "a non-empty table of precision = {peak_fraction, half_work_flop}")
    for precision, curve in gemm.items():
        where = f"calibration.constants.gemm.{precision}"
        if precision not in GEMM_PRECISIONS:
            raise ConfigError(where, precision, "one of " + ", ".join(GEMM_PRECISIONS))
        if not isinstance(curve, Mapping) or set(curve) != {"peak_fraction", "half_work_flop"}:
            raise ConfigError(where, curve, "a table with peak_fraction and half_work_flop")
        _require_positive(f"{where}.peak_fraction", curve["peak_fraction"])
        if curve["peak_fraction"] > 1:
            raise ConfigError(f"{where}.peak_fraction", curve["peak_fraction"], "a number <= 1")
        _require_positive(f"{where}.half_work_flop", curve["half_work_flop"])
    host = constants["host_to_device_Bps"]
    if not isinstance(host, Mapping) or set(host) != {"pinned", "pageable"}:
        raise ConfigError("calibration.constants.host_to_device_Bps", host,
                          "a table with pinned and pageable")
    for kind, value in host.items():
        _require_positive(f"calibration.constants.host_to_device_Bps.{kind}", value)
    if constants["p2p_bandwidth_Bps"] is not None:
        _require_positive("calibration.constants.p2p_bandwidth_Bps",
                          constants["p2p_bandwidth_Bps"])
    allreduce = constants["allreduce"]
    if allreduce is not None:
        if not isinstance(allreduce, Mapping) or \
                set(allreduce) != {"gpus", "latency_s", "bus_bandwidth_Bps"}:
            raise ConfigError("calibration.constants.allreduce", allreduce,
                              "null or a table with gpus, latency_s, bus_bandwidth_Bps")
        for name, value in allreduce.items():
            _require_positive(f"calibration.constants.allreduce.{name}", value)
