"""Calibration: kernels compile, fits recover known constants, files follow the schema.

GPU runs of the harness are marked ``gpu`` and skip without CuPy or a device.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import catalog, compute
from models.calibration import calibrate
from models.calibration.fit import (
    CONSTANT_FIELDS,
    calibration_document,
    check_calibration,
    fit_gemm_efficiency,
    fit_latency_bandwidth,
)
from models.efficiency import saturating_efficiency
from models.errors import ConfigError
from models.random_streams import stream
from simulator import cli

KERNELS_CU = Path(calibrate.__file__).with_name("kernels.cu")
FIXTURE = Path(__file__).parent / "fixtures" / "calibration_measurements.json"
KERNEL_NAMES = ("copy_kernel", "triad_kernel", "empty_kernel", "chain_kernel", "sgemm_tiled",
                "sgd_momentum")
NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if Path("/usr/local/bin/nvcc").exists()
                                else None)


def _gpu_usable() -> bool:
    try:
        calibrate.require_gpu()
    except calibrate.GPUUnavailable:
        return False
    return True


# -- the CUDA source -------------------------------------------------------------------

@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernels_compile_for_ampere_and_hopper(arch, tmp_path):
    cubin = tmp_path / f"kernels_{arch}.cubin"
    result = subprocess.run([NVCC, f"-arch={arch}", "-cubin", "-Werror", "all-warnings",
                             "-o", str(cubin), str(KERNELS_CU)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # extern "C": unmangled names, which is what cupy.RawModule.get_function looks up.
    binary = cubin.read_bytes()
    for name in KERNEL_NAMES:
        assert name.encode() in binary, name


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_kernels_compile_into_one_fatbin_for_both(tmp_path):
    fatbin = tmp_path / "kernels.fatbin"
    result = subprocess.run([NVCC, "-gencode", "arch=compute_80,code=sm_80",
                             "-gencode", "arch=compute_90,code=sm_90", "-fatbin",
                             "-o", str(fatbin), str(KERNELS_CU)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert fatbin.stat().st_size > 0


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_kernels_compile_with_nvrtc_as_cupy_rawmodule_does(arch):
    """cupy.RawModule(code=...) compiles with NVRTC, which has no standard headers."""
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc",
                                reason="CuPy (and its NVRTC binding) is not installed")
    try:
        program = nvrtc.createProgram(KERNELS_CU.read_text(), "kernels.cu", [], [])
    except Exception as exc:  # noqa: BLE001 - the NVRTC library itself is missing
        pytest.skip(f"NVRTC is not loadable: {exc}")
    try:
        nvrtc.compileProgram(program, [f"--gpu-architecture={arch}"])
    except nvrtc.NVRTCError:
        pytest.fail(nvrtc.getProgramLog(program))
    ptx = nvrtc.getPTX(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for name in KERNEL_NAMES:
        assert f".entry {name}(" in ptx, name


# -- the fits ----------------------------------------------------------------------------

def _noise(name: str, count: int, sigma: float = 0.01) -> np.ndarray:
    return stream(7, name).lognormal(0.0, sigma, count)


def test_line_fit_is_exact_on_noiseless_data():
    sizes = np.array([1e3, 1e5, 1e7, 1e9])
    fit = fit_latency_bandwidth(sizes, 5e-6 + sizes / 2e12)
    assert fit.latency_s == pytest.approx(5e-6, rel=1e-6)
    assert fit.bandwidth_per_s == pytest.approx(2e12, rel=1e-6)
    # Half the asymptotic bandwidth at latency x bandwidth: t = 2 x latency there.
    assert fit.half_size == pytest.approx(1e7, rel=1e-6)


def test_line_fit_recovers_latency_and_bandwidth_through_noise():
    """HBM-like memory: 4 us, 3 TB/s, bytes from 1 MiB to 2 GiB, 1% noise."""
    sizes = np.array([2.0**e for e in range(20, 32)])
    seconds = (4e-6 + sizes / 3e12) * _noise("test.calibration.memory", sizes.size)
    fit = fit_latency_bandwidth(sizes, seconds)
    assert fit.bandwidth_per_s == pytest.approx(3e12, rel=0.02)
    assert fit.latency_s == pytest.approx(4e-6, rel=0.05)


def test_line_fit_recovers_pcie_copies_through_noise():
    """Host copies: 10 us, 25 GB/s, 4 KiB to 1 GiB."""
    sizes = np.array([4096.0 * 4**e for e in range(10)])
    seconds = (1e-5 + sizes / 25e9) * _noise("test.calibration.pcie", sizes.size)
    fit = fit_latency_bandwidth(sizes, seconds)
    assert fit.bandwidth_per_s == pytest.approx(25e9, rel=0.02)
    assert fit.latency_s == pytest.approx(1e-5, rel=0.05)


def test_gemm_fit_recovers_saturating_efficiency_through_noise():
    """A100 fp16 peak (catalog, 312 TFLOP/s) at 0.8 of peak with half work 1 GFLOP."""
    peak = catalog.gpu("a100-sxm4-80gb").matrix_peak_flops_per_s("fp16")
    assert peak == pytest.approx(312e12)
    flop = np.array([2.0 * d**3 for d in (256, 512, 1024, 2048, 4096, 8192)])
    rate = peak * saturating_efficiency(flop, 0.8, 1e9) / _noise("test.calibration.gemm",
                                                                flop.size)
    fit = fit_gemm_efficiency(flop, rate, peak)
    assert fit.peak_fraction == pytest.approx(0.8, rel=0.02)
    assert fit.half_work_flop == pytest.approx(1e9, rel=0.1)


def test_gemm_faster_than_the_catalog_peak_is_refused():
    flop = np.array([1e9, 1e10, 1e11])
    with pytest.raises(ConfigError, match="peak_fraction"):
        fit_gemm_efficiency(flop, 1.3 * 100e12 * flop / (flop + 1e8), 100e12)


def test_fits_need_two_sizes_and_positive_times():
    with pytest.raises(ConfigError, match="two distinct sizes"):
        fit_latency_bandwidth([1e6, 1e6], [1e-3, 1.1e-3])
    with pytest.raises(ConfigError, match="seconds"):
        fit_latency_bandwidth([1e6, 1e7], [1e-3, -1.0])


# -- the fixture, the document and the file ---------------------------------------------

@pytest.fixture(scope="module")
def recorded():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def document(recorded):
    return calibration_document(catalog.gpu(recorded["gpu_id"]), recorded["measurements"],
                                recorded["provenance"])


def test_fixture_says_it_is_synthetic(recorded):
    assert "SYNTHETIC" in recorded["provenance"]["synthetic"]
    assert "SYNTHETIC" in recorded["provenance"]["device_name"]


def test_document_from_recorded_measurements_follows_the_schema(document):
    check_calibration(document)
    constants = document["constants"]
    assert tuple(constants) == CONSTANT_FIELDS
    assert set(constants["gemm"]) == {"fp32", "tf32", "fp16", "bf16"}
    scalars = [constants[name] for name in ("memory_bandwidth_Bps", "memory_half_bytes",
                                            "kernel_launch_s", "optimizer_update_Bps",
                                            "host_latency_s")]
    scalars += list(constants["host_to_device_Bps"].values())
    scalars += [v for curve in constants["gemm"].values() for v in curve.values()]
    assert all(v > 0 for v in scalars)
    assert constants["p2p_bandwidth_Bps"] is None and constants["allreduce"] is None


def test_recorded_fit_recovers_the_constants_the_data_was_made_with(document, recorded):
    truth, constants = recorded["provenance"]["synthetic_truth"], document["constants"]
    for name in ("memory_bandwidth_Bps", "kernel_launch_s", "optimizer_update_Bps",
                 "host_latency_s"):
        assert constants[name] == pytest.approx(truth[name], rel=0.05), name
    assert constants["memory_half_bytes"] == pytest.approx(
        truth["memory_latency_s"] * truth["memory_bandwidth_Bps"], rel=0.1)
    for kind in ("pinned", "pageable"):
        assert constants["host_to_device_Bps"][kind] == pytest.approx(
            truth["host_to_device_Bps"][kind], rel=0.05)
    for precision, curve in truth["gemm"].items():
        fitted = constants["gemm"][precision]
        assert fitted["peak_fraction"] == pytest.approx(curve["peak_fraction"], rel=0.05)
        assert fitted["half_work_flop"] == pytest.approx(curve["half_work_flop"], rel=0.25)


def test_compute_model_reads_the_written_file(document, tmp_path):
    path = calibrate.write_calibration(document, tmp_path / "h200-sxm.json")
    assert [p.name for p in tmp_path.iterdir()] == ["h200-sxm.json"]
    loaded = json.loads(path.read_text())
    assert loaded == document
    constants = compute.constants_from_calibration(catalog.gpu("h200-sxm"), loaded)
    assert constants.memory_bandwidth_Bps == document["constants"]["memory_bandwidth_Bps"]
    assert constants.gemm_curve("bf16").peak_fraction == \
        document["constants"]["gemm"]["bf16"]["peak_fraction"]


def test_invalid_document_is_not_written(document, tmp_path):
    broken = json.loads(json.dumps(document))
    broken["constants"]["kernel_launch_s"] = -1.0
    with pytest.raises(ConfigError, match="kernel_launch_s"):
        calibrate.write_calibration(broken, tmp_path / "x.json")
    del broken["constants"]["kernel_launch_s"]
    with pytest.raises(ConfigError, match="constants"):
        check_calibration(broken)
    assert list(tmp_path.iterdir()) == []


def test_missing_measurement_field_is_named(recorded):
    measurements = json.loads(json.dumps(recorded["measurements"]))
    del measurements["gemm"][3]["seconds"]
    with pytest.raises(ConfigError, match=r"measurements\.gemm\[3\]\.seconds"):
        calibration_document(catalog.gpu("h200-sxm"), measurements, recorded["provenance"])


# -- device names and the command ------------------------------------------------------

def test_device_names_map_to_catalog_ids():
    assert calibrate.gpu_id_for_device("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert calibrate.gpu_id_for_device("NVIDIA H200") == "h200-sxm"
    assert calibrate.gpu_id_for_device("NVIDIA A100-SXM4-80GB ") == "a100-sxm4-80gb"
    for known in set(calibrate.DEVICE_IDS.values()) & set(catalog.gpus()):
        assert catalog.gpu(known).id == known


def test_device_names_map_to_catalog_gpus():
    for name, gpu_id in calibrate.DEVICE_IDS.items():
        assert calibrate.gpu_id_for_device(f"  {name} ") == catalog.gpu(gpu_id).id


def test_unknown_device_needs_an_explicit_id():
    with pytest.raises(ConfigError, match="--gpu-id"):
        calibrate.gpu_id_for_device("NVIDIA L4")
    assert calibrate.gpu_id_for_device("NVIDIA L4", override="a100-sxm4-80gb") == \
        "a100-sxm4-80gb"
    with pytest.raises(ConfigError, match="--gpu-id"):
        calibrate.gpu_id_for_device("NVIDIA GeForce RTX 5090", override="rtx-5090")


def test_calibrate_without_cupy_exits_2_with_a_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes ``import cupy`` fail
    assert cli.main(["calibrate", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "CuPy is not importable" in err and "Traceback" not in err


@pytest.mark.skipif(_gpu_usable(), reason="a GPU is usable here: calibrate would run")
def test_calibrate_without_a_gpu_exits_2(capsys):
    assert cli.main(["calibrate"]) == 2
    captured = capsys.readouterr()
    assert "no GPU to calibrate" in captured.err
    assert captured.out == ""


# -- on a GPU ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("cupy", reason="CuPy is not installed")
    if not _gpu_usable():
        pytest.skip("no CUDA device")
    from models.calibration import harness

    return harness.Harness(harness.QUICK, seed=0)


@pytest.mark.gpu
def test_streaming_kernels_match_numpy_exactly(bench):
    import cupy as cp

    n = 1_000_003  # not a multiple of the block: the grid-stride tail runs
    b_host, c_host = bench._uniform(n), bench._uniform(n)
    a, b, c = cp.empty(n, np.float32), cp.asarray(b_host), cp.asarray(c_host)
    bench.check_copy(b, a, b_host)
    bench.check_triad(a, b, c, b_host, c_host, np.float32(0.37))
    bench.check_chain(100)


@pytest.mark.gpu
def test_checks_catch_a_wrong_result(bench):
    import cupy as cp

    from models.calibration.harness import CheckFailed

    n = 4096
    b_host, c_host = bench._uniform(n), bench._uniform(n)
    a, b, c = cp.empty(n, np.float32), cp.asarray(b_host), cp.asarray(c_host)
    with pytest.raises(CheckFailed):
        bench.check_triad(a, b, c, b_host, c_host + np.float32(1), np.float32(0.5))


@pytest.mark.gpu
def test_gemms_match_numpy(bench):
    bench.check_tiled(100, 70, 50)  # edge tiles
    bench.check_tiled(512, 512, 512)
    for precision, dtype in bench.gemm_precisions().items():
        bench.check_cublas(512, 256, 384, precision, dtype)


@pytest.mark.gpu
def test_sgd_update_and_host_copies_match_numpy(bench):
    bench.check_sgd(bench._uniform(100_001), bench._uniform(100_001), bench._uniform(100_001))
    for memory in ("pinned", "pageable"):
        bench.check_host_copy(1 << 20, memory)


@pytest.mark.gpu
@pytest.mark.slow
def test_quick_calibration_writes_a_valid_file(tmp_path):
    pytest.importorskip("cupy", reason="CuPy is not installed")
    if not _gpu_usable():
        pytest.skip("no CUDA device")
    from models.calibration import harness

    gpu_id = calibrate.DEVICE_IDS.get(harness.device_name().strip())
    if gpu_id not in catalog.gpus():
        pytest.skip(f"{harness.device_name()!r} has no catalog entry")
    path, document = calibrate.calibrate(out=tmp_path / "cal.json", quick=True, command="test")
    check_calibration(json.loads(path.read_text()))
    assert document["gpu_id"] == gpu_id
