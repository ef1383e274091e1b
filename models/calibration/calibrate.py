"""Run the harness on this machine's GPU, fit, and write ``data/calibration/<gpu-id>.json``.

Nothing here imports CuPy at module level: :func:`require_gpu` finds out whether CuPy
and a CUDA device are there and raises :class:`GPUUnavailable` (with what to do about
it) when they are not, so ``ddlsim calibrate`` can say so plainly on any machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from models import catalog
from models.calibration.fit import calibration_document, check_calibration
from models.errors import ConfigError


class GPUUnavailable(RuntimeError):
    """No usable CUDA GPU here: CuPy missing, no driver, or no device."""


#: CUDA device names (``cudaDeviceProp.name``, as nvidia-smi prints them) of the GPUs the
#: catalog knows. Exact names only: "NVIDIA H100 PCIe" or "NVIDIA H200 NVL" differ in
#: clocks, power and links from the SXM parts, and must not borrow their ids.
DEVICE_IDS: Mapping[str, str] = {
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA H200": "h200-sxm",
    "NVIDIA A100-SXM4-80GB": "a100-sxm4-80gb",
    "NVIDIA A100-SXM4-40GB": "a100-sxm4-40gb",
    "NVIDIA A10G": "a10g",
    "NVIDIA A30": "a30",
    "NVIDIA A40": "a40",
    "NVIDIA RTX A6000": "rtx-a6000",
    "NVIDIA L40S": "l40s",
    "NVIDIA GeForce RTX 3090": "rtx-3090",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "Tesla T4": "t4",
    # The 32 GB V100 SXM2 has the 16 GB board's clocks and HBM2 bandwidth.
    "Tesla V100-SXM2-16GB": "v100-sxm2",
    "Tesla V100-SXM2-32GB": "v100-sxm2",
    "Tesla V100-PCIE-16GB": "v100-pcie",
    "Tesla P100-SXM2-16GB": "p100-sxm2",
    "Tesla P100-PCIE-16GB": "p100-pcie",
    "Tesla K80": "k80",
}


def gpu_id_for_device(device_name: str, override: str | None = None) -> str:
    """The catalog id for a CUDA device name; ``override`` (``--gpu-id``) wins."""
    if override is not None:
        return catalog.gpu(override, "--gpu-id").id
    name = device_name.strip()
    if name not in DEVICE_IDS:
        raise ConfigError("device name", name,
                          "a GPU the catalog knows (" + "; ".join(sorted(DEVICE_IDS)) +
                          "), or name its catalog id with --gpu-id")
    return DEVICE_IDS[name]


def require_gpu():
    """CuPy's module, once it has shown that a CUDA device answers."""
    try:
        import cupy
    except ImportError as exc:
        raise GPUUnavailable(
            f"CuPy is not importable ({exc}); install it with pip install -e '.[gpu]' on a "
            "machine with an NVIDIA GPU and CUDA 12") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, or a missing driver library
        raise GPUUnavailable(f"no CUDA device is usable: {exc}") from None
    if count < 1:
        raise GPUUnavailable("no CUDA device is visible (CUDA_VISIBLE_DEVICES?)")
    return cupy


def default_path(gpu_id: str) -> Path:
    return catalog.data_dir() / "calibration" / f"{gpu_id}.json"


def write_calibration(document: Mapping[str, Any], path: Path | str) -> Path:
    """Check ``document`` against the schema, then write it whole or not at all."""
    check_calibration(document)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=1)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def calibrate(gpu_id: str | None = None, out: Path | str | None = None, quick: bool = False,
              seed: int = 0, command: str | None = None,
              log: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Measure GPU 0, fit the constants and write the calibration file.

    The GPU id is resolved (and checked against the catalog) before anything is timed,
    so a wrong id fails in a second rather than after the sweep.
    """
    require_gpu()
    from models.calibration import harness

    name = harness.device_name()
    gpu = catalog.gpu(gpu_id_for_device(name, gpu_id),
                      "--gpu-id" if gpu_id is not None else f"catalog id of device {name!r}")
    bench = harness.Harness(harness.QUICK if quick else harness.FULL, seed=seed)
    measurements = bench.measure_all(log)
    provenance = harness.provenance(command if command is not None else " ".join(sys.argv))
    provenance["skipped"] = dict(bench.skipped)
    provenance["plan"] = "quick" if quick else "full"
    provenance["seed"] = seed
    document = calibration_document(gpu, measurements, provenance)
    return write_calibration(document, out if out is not None else default_path(gpu.id)), document
