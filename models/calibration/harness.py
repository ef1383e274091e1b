"""The calibration harness: real CUDA kernels timed on the GPU through CuPy.

Imports CuPy at module level: import it only after :func:`models.calibration.calibrate.
require_gpu` has said a GPU is there. Every kernel's result is checked against numpy
(exactly where the arithmetic allows, else against a float64 reference with a tolerance
set by the precision) *before* it is timed: a fast wrong kernel must not calibrate
anything.

Timing: warm-up launches, then CUDA events around each repeat, median of the repeats.
Host-side copies (host↔device, peer, all-reduce) are timed by the wall clock around a
synchronous call, since part of their cost (pageable staging, NCCL's host side) is not on
any one stream.

Inputs are random, never zero, drawn from the named stream ``calibration.inputs``.
"""

from __future__ import annotations

import ctypes
import math
import socket
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cupy as cp
import numpy as np

from models.calibration.fit import SGD_BYTES_PER_PARAM, STREAM_BYTES_PER_ELEMENT
from models.random_streams import stream

KERNELS_CU = Path(__file__).with_name("kernels.cu")
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

#: Relative Frobenius-norm error allowed against a float64 product of the same (rounded)
#: inputs. fp32 accumulation over k <= 8192 stays near 1e-6; TF32 rounds inputs to 10
#: mantissa bits (about 5e-4), so the fp32 bound also proves TF32 was off. fp16 and bf16
#: round the output to 11 and 8 bits.
GEMM_TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 3e-3, "bf16": 2e-2}

#: Rows of each GEMM result compared with numpy (every row of small ones): a 8192^3
#: float64 product on the host would take longer than the whole sweep.
CHECKED_ROWS = 16

SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY = 0.01, 0.9, 1e-4


class CheckFailed(RuntimeError):
    """A kernel produced a wrong result; nothing it timed may be used."""


@dataclass(frozen=True)
class Plan:
    """What to measure. Memory sizes are bytes per array; host sizes bytes per copy."""

    memory_array_bytes: tuple[int, ...]
    launch_counts: tuple[int, ...]
    gemm_shapes: tuple[tuple[int, int, int], ...]
    tiled_max_dim: int
    optimizer_params: tuple[int, ...]
    host_copy_bytes: tuple[int, ...]
    peer_bytes: tuple[int, ...]
    warmup: int
    repeats: int


def _powers_of_two(low: int, high: int, step: int = 1) -> tuple[int, ...]:
    return tuple(1 << e for e in range(low.bit_length() - 1, high.bit_length(), step))


_SQUARES = tuple((d, d, d) for d in (256, 512, 1024, 2048, 4096, 8192))
# Training-shaped GEMMs: a small batch against a wide layer, and the weight gradient
# (a reduction over the batch) of the same layer.
_SKINNY = ((256, 4096, 4096), (4096, 4096, 256), (1024, 4096, 1024))

#: The full sweep: arrays from 1 MiB to 2 GiB (far past any L2 cache, 50 MB on H100).
FULL = Plan(
    memory_array_bytes=_powers_of_two(MiB, 2 * GiB),
    launch_counts=(1, 10, 100, 1000),
    gemm_shapes=_SQUARES + _SKINNY,
    tiled_max_dim=4096,
    optimizer_params=_powers_of_two(1 << 14, 1 << 27),
    host_copy_bytes=_powers_of_two(4 * KiB, GiB, 2),
    peer_bytes=_powers_of_two(64 * KiB, GiB, 2),
    warmup=3,
    repeats=10,
)

#: A few minutes or less: sizes still reach past L2, fewer repeats.
QUICK = Plan(
    memory_array_bytes=_powers_of_two(MiB, 256 * MiB, 2),
    launch_counts=(1, 10, 100),
    gemm_shapes=tuple((d, d, d) for d in (256, 512, 1024, 2048, 4096)),
    tiled_max_dim=2048,
    optimizer_params=_powers_of_two(1 << 14, 1 << 25, 2),
    host_copy_bytes=_powers_of_two(4 * KiB, 64 * MiB, 2),
    peer_bytes=_powers_of_two(64 * KiB, 64 * MiB, 2),
    warmup=2,
    repeats=5,
)


def _version(encoded: int) -> str:
    """CUDA's 12040 as "12.4"."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def device_name(device: int = 0) -> str:
    name = cp.cuda.runtime.getDeviceProperties(device)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def provenance(command: str, device: int = 0) -> dict[str, Any]:
    props = cp.cuda.runtime.getDeviceProperties(device)
    return {
        "device_name": device_name(device),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "driver_version": _version(cp.cuda.runtime.driverGetVersion()),
        "cuda_runtime_version": _version(cp.cuda.runtime.runtimeGetVersion()),
        "cupy_version": cp.__version__,
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "host": socket.gethostname(),
    }


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    """A host array's address in the form every CuPy version's copy_*_host accepts."""
    return array.ctypes.data_as(ctypes.c_void_p)


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _require_equal(what: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape or not np.array_equal(got, want):
        mismatched = int(np.count_nonzero(got != want)) if got.shape == want.shape else -1
        raise CheckFailed(f"{what}: result differs from the numpy reference "
                          f"({mismatched} of {want.size} elements)")


class Harness:
    """Kernels compiled once for one device; each measurement checks, then times."""

    def __init__(self, plan: Plan = FULL, seed: int = 0, device: int = 0):
        self.plan = plan
        self.device = cp.cuda.Device(device)
        self.device.use()
        props = cp.cuda.runtime.getDeviceProperties(device)
        self.compute_capability = props["major"] * 10 + props["minor"]
        self.sm_count = props["multiProcessorCount"]
        self.rng = stream(seed, "calibration.inputs")
        module = cp.RawModule(code=KERNELS_CU.read_text())
        self.kernel = {name: module.get_function(name) for name in (
            "copy_kernel", "triad_kernel", "empty_kernel", "chain_kernel", "sgemm_tiled",
            "sgd_momentum")}
        #: What could not be measured here, and why (goes into the provenance).
        self.skipped: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------

    def _uniform(self, count: int) -> np.ndarray:
        """Float32 in [-1, 1): random and never all zero."""
        values = self.rng.random(count, dtype=np.float32)
        values *= 2
        values -= 1
        return values

    def _stream_grid(self, n: int, threads: int = 256) -> tuple[tuple[int], tuple[int]]:
        # One full wave of resident blocks; the grid-stride loop covers the rest.
        blocks = max(1, min(math.ceil(n / threads), self.sm_count * (2048 // threads)))
        return (blocks,), (threads,)

    def _time_events(self, launch: Callable[[], object], inner: int = 1) -> float:
        """Median seconds of ``inner`` back-to-back calls of ``launch``, per call."""
        for _ in range(self.plan.warmup):
            launch()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        samples = []
        for _ in range(self.plan.repeats):
            start.record()
            for _ in range(inner):
                launch()
            stop.record()
            stop.synchronize()
            samples.append(cp.cuda.get_elapsed_time(start, stop) * 1e-3 / inner)
        return float(np.median(samples))

    def _time_wall(self, run: Callable[[], object]) -> float:
        """Median wall-clock seconds of a call that returns when its work is done."""
        for _ in range(self.plan.warmup):
            run()
        samples = []
        for _ in range(self.plan.repeats):
            begin = time.perf_counter()
            run()
            samples.append(time.perf_counter() - begin)
        return float(np.median(samples))

    def _fits(self, nbytes: int, fraction: float = 0.8) -> bool:
        free, _ = cp.cuda.runtime.memGetInfo()
        return nbytes <= fraction * free

    # -- memory bandwidth ------------------------------------------------------------

    def check_copy(self, src: cp.ndarray, dst: cp.ndarray, src_host: np.ndarray) -> None:
        n = src.size
        dst.fill(np.nan)
        self.kernel["copy_kernel"](*self._stream_grid(n), (src, dst, np.int64(n)))
        _require_equal(f"copy of {n} floats", cp.asnumpy(dst), src_host)

    def check_triad(self, a: cp.ndarray, b: cp.ndarray, c: cp.ndarray, b_host: np.ndarray,
                    c_host: np.ndarray, scalar: np.float32) -> None:
        n = a.size
        a.fill(np.nan)
        self.kernel["triad_kernel"](*self._stream_grid(n), (a, b, c, scalar, np.int64(n)))
        _require_equal(f"triad of {n} floats", cp.asnumpy(a), b_host + scalar * c_host)

    def memory(self) -> list[dict[str, Any]]:
        sizes = [s for s in self.plan.memory_array_bytes if self._fits(3 * s)]
        if len(sizes) < len(self.plan.memory_array_bytes):
            self.skipped["memory"] = (f"arrays above {max(sizes)} bytes: three of them do not "
                                      "fit in free device memory")
        count = max(sizes) // 4
        b_host, c_host = self._uniform(count), self._uniform(count)
        b, c = cp.asarray(b_host), cp.asarray(c_host)
        a = cp.empty_like(b)
        scalar = np.float32(self._uniform(1)[0])
        records = []
        for size in sizes:
            n = size // 4
            # Prefixes of the largest arrays: one random draw serves every size.
            an, bn, cn = a[:n], b[:n], c[:n]
            self.check_copy(bn, an, b_host[:n])
            seconds = self._time_events(
                lambda n=n, an=an, bn=bn: self.kernel["copy_kernel"](
                    *self._stream_grid(n), (bn, an, np.int64(n))))
            records.append(self._memory_record("copy", n, seconds))
            self.check_triad(an, bn, cn, b_host[:n], c_host[:n], scalar)
            seconds = self._time_events(
                lambda n=n, an=an, bn=bn, cn=cn: self.kernel["triad_kernel"](
                    *self._stream_grid(n), (an, bn, cn, scalar, np.int64(n))))
            records.append(self._memory_record("triad", n, seconds))
        return records

    @staticmethod
    def _memory_record(kernel: str, elements: int, seconds: float) -> dict[str, Any]:
        moved = STREAM_BYTES_PER_ELEMENT[kernel] * elements
        return {"kernel": kernel, "size_bytes": moved, "seconds": seconds,
                "bytes_per_s": moved / seconds}

    # -- launch latency --------------------------------------------------------------

    def check_chain(self, launches: int, elements: int = 256) -> cp.ndarray:
        start = self._uniform(elements)
        x = cp.asarray(start)
        for _ in range(launches):
            self.kernel["chain_kernel"]((1,), (elements,), (x, np.int32(elements)))
        want = start.copy()
        for _ in range(launches):
            want += np.float32(1)
        _require_equal(f"chain of {launches} kernels", cp.asnumpy(x), want)
        return x

    def launch(self) -> list[dict[str, Any]]:
        records = []
        for count in self.plan.launch_counts:
            seconds = self._time_events(lambda: self.kernel["empty_kernel"]((1,), (1,), ()),
                                        inner=count)
            records.append({"kind": "empty", "kernels": count, "seconds_per_kernel": seconds})
            x = self.check_chain(count)
            seconds = self._time_events(
                lambda x=x: self.kernel["chain_kernel"]((1,), (x.size,), (x, np.int32(x.size))),
                inner=count)
            records.append({"kind": "chain", "kernels": count, "seconds_per_kernel": seconds})
        return records

    # -- GEMM ------------------------------------------------------------------------

    def gemm_precisions(self) -> dict[str, Any]:
        """Precisions this GPU and CuPy can run, with the numpy dtype of the operands."""
        available: dict[str, Any] = {"fp32": np.float32, "fp16": np.float16}
        if self.compute_capability < 80:
            self.skipped["gemm.tf32"] = self.skipped["gemm.bf16"] = (
                f"compute capability {self.compute_capability / 10:.1f} < 8.0")
            return available
        try:
            from cupy._core import _routines_linalg as linalg

            linalg.COMPUTE_TYPE_TF32  # noqa: B018 - present in CuPy >= 8
            available["tf32"] = np.float32
        except (ImportError, AttributeError) as exc:
            self.skipped["gemm.tf32"] = f"CuPy {cp.__version__} has no TF32 compute type: {exc}"
        try:
            import ml_dtypes

            probe = cp.asarray(np.ones((8, 8), dtype=ml_dtypes.bfloat16))
            cp.matmul(probe, probe)
            available["bf16"] = ml_dtypes.bfloat16
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot", said why
            self.skipped["gemm.bf16"] = (f"CuPy {cp.__version__} cannot multiply bfloat16 "
                                         f"(needs CuPy >= 14 with ml_dtypes): {exc}")
        return available

    @contextmanager
    def _fp32_math(self, precision: str):
        """fp32 GEMMs on CUDA cores or on TF32 tensor cores, whatever CUPY_TF32 says."""
        if precision not in ("fp32", "tf32"):
            yield
            return
        from cupy._core import _routines_linalg as linalg

        wanted = linalg.COMPUTE_TYPE_TF32 if precision == "tf32" else linalg.COMPUTE_TYPE_DEFAULT
        previous = linalg.get_compute_type(np.float32)
        linalg.set_compute_type(np.float32, wanted)
        try:
            yield
        finally:
            linalg.set_compute_type(np.float32, previous)

    def _operands(self, m: int, n: int, k: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        return (self._uniform(m * k).reshape(m, k).astype(dtype),
                self._uniform(k * n).reshape(k, n).astype(dtype))

    def _check_product(self, what: str, c: cp.ndarray, a_host: np.ndarray, b_host: np.ndarray,
                       tolerance: float) -> None:
        m = a_host.shape[0]
        rows = (np.arange(m) if m <= CHECKED_ROWS
                else np.sort(self.rng.choice(m, CHECKED_ROWS, replace=False)))
        want = a_host[rows].astype(np.float64) @ b_host.astype(np.float64)
        # The whole result comes back (a plain copy), so no CuPy kernel has to index a
        # bfloat16 array.
        got = cp.asnumpy(c)[rows].astype(np.float64)
        error = _relative_error(got, want)
        if not error <= tolerance:
            raise CheckFailed(f"{what}: relative error {error:.2e} exceeds {tolerance:.0e}")

    def check_cublas(self, m: int, n: int, k: int, precision: str, dtype) -> tuple:
        a_host, b_host = self._operands(m, n, k, dtype)
        a, b = cp.asarray(a_host), cp.asarray(b_host)
        c = cp.empty((m, n), dtype=a.dtype)
        with self._fp32_math(precision):
            cp.matmul(a, b, out=c)
        self._check_product(f"cuBLAS {precision} GEMM {m}x{n}x{k}", c, a_host, b_host,
                            GEMM_TOLERANCE[precision])
        return a, b, c

    def _tiled_launch(self, a: cp.ndarray, b: cp.ndarray, c: cp.ndarray) -> None:
        m, k = a.shape
        n = b.shape[1]
        grid = (math.ceil(n / 32), math.ceil(m / 32))
        self.kernel["sgemm_tiled"](grid, (32, 32), (a, b, c, np.int32(m), np.int32(n),
                                                    np.int32(k)))

    def check_tiled(self, m: int, n: int, k: int) -> tuple:
        a_host, b_host = self._operands(m, n, k, np.float32)
        a, b = cp.asarray(a_host), cp.asarray(b_host)
        c = cp.full((m, n), np.nan, dtype=np.float32)
        self._tiled_launch(a, b, c)
        self._check_product(f"tiled SGEMM {m}x{n}x{k}", c, a_host, b_host, GEMM_TOLERANCE["fp32"])
        return a, b, c

    def gemm(self) -> list[dict[str, Any]]:
        records = []
        for precision, dtype in self.gemm_precisions().items():
            for m, n, k in self.plan.gemm_shapes:
                a, b, c = self.check_cublas(m, n, k, precision, dtype)
                with self._fp32_math(precision):
                    seconds = self._time_events(lambda a=a, b=b, c=c: cp.matmul(a, b, out=c))
                records.append(self._gemm_record("cublas", precision, m, n, k, seconds))
        for m, n, k in self.plan.gemm_shapes:
            if max(m, n, k) > self.plan.tiled_max_dim:
                continue
            a, b, c = self.check_tiled(m, n, k)
            seconds = self._time_events(lambda a=a, b=b, c=c: self._tiled_launch(a, b, c))
            records.append(self._gemm_record("tiled", "fp32", m, n, k, seconds))
        return records

    @staticmethod
    def _gemm_record(impl: str, precision: str, m: int, n: int, k: int,
                     seconds: float) -> dict[str, Any]:
        return {"impl": impl, "precision": precision, "m": m, "n": n, "k": k,
                "seconds": seconds, "flops_per_s": 2 * m * n * k / seconds}

    # -- optimizer update ------------------------------------------------------------

    def _sgd_launch(self, param: cp.ndarray, grad: cp.ndarray, buf: cp.ndarray) -> None:
        n = param.size
        self.kernel["sgd_momentum"](*self._stream_grid(n), (
            param, grad, buf, np.float32(SGD_LR), np.float32(SGD_MOMENTUM),
            np.float32(SGD_WEIGHT_DECAY), np.int64(n)))

    def check_sgd(self, param_host: np.ndarray, grad_host: np.ndarray,
                  buf_host: np.ndarray) -> None:
        param, grad, buf = (cp.asarray(x) for x in (param_host, grad_host, buf_host))
        self._sgd_launch(param, grad, buf)
        lr, momentum, decay = (np.float32(v) for v in (SGD_LR, SGD_MOMENTUM, SGD_WEIGHT_DECAY))
        # torch.optim.SGD's rule, in float32 like the kernel.
        want_buf = momentum * buf_host + (grad_host + decay * param_host)
        want_param = param_host - lr * want_buf
        _require_equal(f"SGD momentum buffer ({param_host.size})", cp.asnumpy(buf), want_buf)
        _require_equal(f"SGD parameters ({param_host.size})", cp.asnumpy(param), want_param)

    def optimizer(self) -> list[dict[str, Any]]:
        counts = [c for c in self.plan.optimizer_params if self._fits(3 * 4 * c)]
        if len(counts) < len(self.plan.optimizer_params):
            self.skipped["optimizer"] = f"above {max(counts)} parameters: out of device memory"
        total = max(counts)
        host = [self._uniform(total) for _ in range(3)]
        records = []
        for count in counts:
            self.check_sgd(*(x[:count] for x in host))
            param, grad, buf = (cp.asarray(x[:count]) for x in host)
            seconds = self._time_events(lambda p=param, g=grad, b=buf: self._sgd_launch(p, g, b))
            moved = SGD_BYTES_PER_PARAM * count
            records.append({"params": count, "seconds": seconds, "bytes_per_s": moved / seconds})
        return records

    # -- host <-> device -------------------------------------------------------------

    def _host_buffer(self, nbytes: int, memory: str) -> np.ndarray:
        if memory == "pinned":
            block = cp.cuda.alloc_pinned_memory(nbytes)
            return np.frombuffer(block, dtype=np.uint8, count=nbytes)
        return np.empty(nbytes, dtype=np.uint8)

    def check_host_copy(self, nbytes: int, memory: str) -> tuple:
        source = self._host_buffer(nbytes, memory)
        source[:] = self.rng.integers(1, 256, nbytes, dtype=np.uint8)
        target = self._host_buffer(nbytes, memory)
        target[:] = 0
        device = cp.empty(nbytes, dtype=np.uint8)
        device.data.copy_from_host(_pointer(source), nbytes)
        _require_equal(f"h2d copy of {nbytes} {memory} bytes", cp.asnumpy(device), source)
        device.data.copy_to_host(_pointer(target), nbytes)
        _require_equal(f"d2h copy of {nbytes} {memory} bytes", target, source)
        return source, target, device

    def host_copy(self) -> list[dict[str, Any]]:
        records = []
        for memory in ("pinned", "pageable"):
            for nbytes in self.plan.host_copy_bytes:
                source, target, device = self.check_host_copy(nbytes, memory)
                # cudaMemcpy returns when the copy is done (pageable: staged through a
                # pinned bounce buffer by the driver, the cost we want to see).
                src, dst = _pointer(source), _pointer(target)
                h2d = self._time_wall(
                    lambda d=device, s=src, n=nbytes: d.data.copy_from_host(s, n))
                d2h = self._time_wall(
                    lambda d=device, t=dst, n=nbytes: d.data.copy_to_host(t, n))
                for direction, seconds in (("h2d", h2d), ("d2h", d2h)):
                    records.append({"direction": direction, "memory": memory,
                                    "size_bytes": nbytes, "seconds": seconds})
        return records

    # -- several GPUs ----------------------------------------------------------------

    def peer(self) -> list[dict[str, Any]]:
        if cp.cuda.runtime.getDeviceCount() < 2:
            self.skipped["p2p"] = "one GPU visible"
            return []
        if not cp.cuda.runtime.deviceCanAccessPeer(0, 1):
            self.skipped["p2p"] = "GPU 0 cannot access GPU 1 directly"
            return []
        records = []
        for nbytes in self.plan.peer_bytes:
            source_host = self.rng.integers(1, 256, nbytes, dtype=np.uint8)
            with cp.cuda.Device(0):
                source = cp.asarray(source_host)
            with cp.cuda.Device(1):
                target = cp.zeros(nbytes, dtype=np.uint8)
            # CuPy enables peer access on the first device-to-device copy.
            target.data.copy_from_device(source.data, nbytes)
            _require_equal(f"peer copy of {nbytes} bytes", cp.asnumpy(target), source_host)

            def run(source=source, target=target, nbytes=nbytes):
                target.data.copy_from_device(source.data, nbytes)
                for device in (0, 1):
                    cp.cuda.Device(device).synchronize()

            seconds = self._time_wall(run)
            records.append({"src": 0, "dst": 1, "size_bytes": nbytes, "seconds": seconds,
                            "bytes_per_s": nbytes / seconds})
        return records

    def allreduce(self) -> list[dict[str, Any]]:
        gpus = cp.cuda.runtime.getDeviceCount()
        if gpus < 2:
            self.skipped["allreduce"] = "one GPU visible"
            return []
        from cupy.cuda import nccl

        if not nccl.available:
            self.skipped["allreduce"] = "CuPy was built without NCCL"
            return []
        comms = nccl.NcclCommunicator.initAll(list(range(gpus)))
        records = []
        for nbytes in self.plan.peer_bytes:
            count = nbytes // 4
            # Small integers: every partial sum is exact in float32, whatever order NCCL
            # adds in, so the check is exact.
            parts = [self.rng.integers(-1000, 1000, count, dtype=np.int16).astype(np.float32)
                     for _ in range(gpus)]
            send, recv = [], []
            for device, part in enumerate(parts):
                with cp.cuda.Device(device):
                    send.append(cp.asarray(part))
                    recv.append(cp.empty_like(send[-1]))

            def run(send=send, recv=recv, count=count):
                nccl.groupStart()
                for device, comm in enumerate(comms):
                    with cp.cuda.Device(device):
                        comm.allReduce(send[device].data.ptr, recv[device].data.ptr, count,
                                       nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                                       cp.cuda.Stream.null.ptr)
                nccl.groupEnd()
                for device in range(gpus):
                    cp.cuda.Device(device).synchronize()

            run()
            want = parts[0].copy()
            for part in parts[1:]:
                want += part
            for device in range(gpus):
                _require_equal(f"all-reduce of {nbytes} bytes on GPU {device}",
                               cp.asnumpy(recv[device]), want)
            seconds = self._time_wall(run)
            algbw = nbytes / seconds
            records.append({"gpus": gpus, "size_bytes": nbytes, "seconds": seconds,
                            "algbw_Bps": algbw, "busbw_Bps": algbw * 2 * (gpus - 1) / gpus})
        return records

    # -- everything ------------------------------------------------------------------

    def measure_all(self, log: Callable[[str], None] | None = None) -> dict[str, list]:
        log = log or (lambda message: print(message, file=sys.stderr))
        measurements = {}
        for section, measure in (("memory", self.memory), ("launch", self.launch),
                                 ("gemm", self.gemm), ("optimizer", self.optimizer),
                                 ("host_copy", self.host_copy), ("p2p", self.peer),
                                 ("allreduce", self.allreduce)):
            log(f"calibrate: {section} ...")
            begin = time.perf_counter()
            measurements[section] = measure()
            log(f"calibrate: {section}: {len(measurements[section])} records "
                f"in {time.perf_counter() - begin:.1f} s")
        return measurements
