"""Compute cost of one training iteration on one GPU, layer by layer.

Matrix layers (conv, linear, matmul) run at the matrix peak of the training precision
times a saturating efficiency of the GEMM's size, and never faster than the bytes they
move at the achieved memory bandwidth (roofline). Every other layer is memory-bound: the
bytes it moves over the achieved bandwidth. The optimizer update (SGD with momentum) is
memory-bound over the parameters.

Each kernel takes at least ``kernel_launch_s``. A framework issues kernels from the host
while the GPU runs earlier ones, so launch overhead hides behind a long kernel and bounds
a short one: a kernel costs ``max(launch, work)``, not ``launch + work``.

Constants come from ``data/calibration/<gpu-id>.json`` (the calibration harness) when it
exists, else from the datasheet derating in ``data/calibration/defaults.toml``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from models.catalog import data_dir, read_toml
from models.efficiency import saturating_efficiency
from models.errors import ConfigError, require_choice, require_int, require_number
from models.frameworks import DEFAULT_FRAMEWORK, FRAMEWORKS, FUSION_LEVELS, MEMORY_FORMATS
from models.frameworks import framework as framework_by_id
from models.hardware import ACTIVATION_BYTES, GPUSpec
from models.workloads import Layer, Workload, layer_table

#: Columns of :func:`layer_times`, consumed by the simulation engine.
LAYER_TIME_COLUMNS = ("name", "kind", "forward_s", "backward_input_s", "backward_weight_s",
                      "update_s", "gradient_bytes")

#: Precisions trained with automatic mixed precision: fp32 master weights, half-precision
#: copies of the weights for the matrix math.
MIXED_PRECISIONS = ("fp16", "bf16", "fp8")


#: SGD with momentum over fp32 state, per parameter: read parameter, gradient and
#: momentum, write parameter and momentum (one fused kernel, as PyTorch's foreach/fused
#: SGD and apex FusedSGD run it).
SGD_MOMENTUM_BYTES_PER_PARAM = 5 * 4
#: Mixed precision, per parameter and iteration: cast the fp32 master weight to a half
#: copy for the matrix math (read 4 bytes, write 2), as torch.autocast does each forward.
AMP_CAST_BYTES_PER_PARAM = 4 + 2


@dataclass(frozen=True)
class MemoryPass:
    """One memory-bound kernel, its traffic in multiples of the layer's tensors.

    ``x`` counts passes over input-sized tensors (reads of x, writes of dx), ``y`` passes
    over output-sized tensors (reads of y or dy, writes of y).
    """

    x: float
    y: float


@dataclass(frozen=True)
class MemoryTraffic:
    """The kernels a memory-bound layer runs in each phase."""

    forward: tuple[MemoryPass, ...]
    backward_input: tuple[MemoryPass, ...]
    backward_weight: tuple[MemoryPass, ...] = ()


#: Kernels and bytes of each memory-bound kind, following PyTorch's CUDA kernels.
MEMORY_TRAFFIC: Mapping[str, MemoryTraffic] = MappingProxyType({
    # Training-mode batch norm runs two kernels each way (PyTorch
    # aten/src/ATen/native/cuda/Normalization.cuh; cuDNN's spatial batch norm likewise):
    # forward: collect statistics (read x), then normalize (read x, write y); backward:
    # reduce sum(dy) and sum(dy * x_hat) for the parameter gradients (read x, dy), then
    # the element-wise input gradient (read x, dy, write dx). The same two-pass rule is
    # used for layer norm, whose PyTorch kernels also take a moments pass and a
    # normalizing pass over rows too long to keep in registers.
    "norm": MemoryTraffic(
        forward=(MemoryPass(x=1, y=0), MemoryPass(x=1, y=1)),
        backward_input=(MemoryPass(x=2, y=1),),
        backward_weight=(MemoryPass(x=1, y=1),),
    ),
    # ReLU/GELU: read x, write y; backward reads the saved tensor and dy, writes dx.
    "activation": MemoryTraffic(
        forward=(MemoryPass(x=1, y=1),),
        backward_input=(MemoryPass(x=1, y=2),),
    ),
    # Pooling reads its window once and writes y; backward reads dy and writes dx (the
    # max-pool index tensor is left out).
    "pool": MemoryTraffic(
        forward=(MemoryPass(x=1, y=1),),
        backward_input=(MemoryPass(x=1, y=1),),
    ),
    # Softmax reads a row and writes it (PyTorch keeps a row in registers or shared
    # memory); backward reads y and dy, writes dx.
    "softmax": MemoryTraffic(
        forward=(MemoryPass(x=1, y=1),),
        backward_input=(MemoryPass(x=1, y=2),),
    ),
    # Residual add, scaling, dropout: read operands, write result; backward: the gradient
    # accumulation where the branches rejoin reads and writes the same sizes.
    "elementwise": MemoryTraffic(
        forward=(MemoryPass(x=1, y=1),),
        backward_input=(MemoryPass(x=1, y=1),),
    ),
    # Embedding lookup gathers output-sized rows and writes them; backward scatter-adds
    # dy into the weight gradient (read dy, read-modify-write rows). The indices are
    # neglected and there is no input gradient.
    "embedding": MemoryTraffic(
        forward=(MemoryPass(x=0, y=2),),
        backward_input=(),
        backward_weight=(MemoryPass(x=0, y=3),),
    ),
})


#: Fused kernels (see :mod:`models.frameworks`). A ReLU folded into the batch norm
#: before it makes no pass of its own.
FUSED_AWAY = MemoryTraffic(forward=(), backward_input=())
#: A residual add between a batch norm and its ReLU, folded into the batch-norm kernel:
#: forward reads the addend once more, backward writes the addend's gradient.
FUSED_ADD = MemoryTraffic(forward=(MemoryPass(x=0, y=1),),
                          backward_input=(MemoryPass(x=0, y=1),))
#: A batch norm after a convolution under ``conv_norm``: statistics come from the
#: convolution's epilogue and the scale-bias-ReLU is applied where the tensor is next
#: read, so forward makes no pass; backward keeps its reductions and input gradient.
CONV_NORM = MemoryTraffic(forward=(),
                          backward_input=MEMORY_TRAFFIC["norm"].backward_input,
                          backward_weight=MEMORY_TRAFFIC["norm"].backward_weight)
#: The same batch norm when no convolution or add follows to apply it: one
#: scale-bias-ReLU pass of its own.
CONV_NORM_APPLIED = MemoryTraffic(forward=(MemoryPass(x=1, y=1),),
                                  backward_input=CONV_NORM.backward_input,
                                  backward_weight=CONV_NORM.backward_weight)
#: The block-ending ``ScaleBiasAddRelu`` under ``conv_norm``: reads both branches'
#: raw outputs, writes the sum (the add's own forward pass); backward as ``FUSED_ADD``.
CONV_NORM_ADD = MemoryTraffic(forward=MEMORY_TRAFFIC["elementwise"].forward,
                              backward_input=FUSED_ADD.backward_input)


def memory_traffic_plan(kinds: list[str] | tuple[str, ...], fusion: str
                        ) -> list[MemoryTraffic | None]:
    """Per layer (forward order), the memory passes it makes under ``fusion``.

    None for matrix layers. Patterns are read from neighbouring kinds: a ReLU right
    after a batch norm, or after an add that follows a batch norm, is fused; an add
    between a batch norm and a ReLU is fused. Under ``conv_norm`` a batch norm right
    after a convolution also drops its forward passes when what consumes it (past a
    fused ReLU) is a convolution or the block's fused add (a downsample branch's
    convolution listed between a block's last batch norm and its add counts: that norm
    is applied in the add); otherwise (a stem that max-pools next) it keeps one apply
    pass.
    """
    require_choice("fusion", fusion, FUSION_LEVELS)
    plan: list[MemoryTraffic | None] = [MEMORY_TRAFFIC.get(kind) for kind in kinds]
    if fusion == "none":
        return plan
    count = len(kinds)

    def kind(index: int) -> str | None:
        return kinds[index] if 0 <= index < count else None

    fused_add = [kinds[i] == "elementwise" and kind(i - 1) == "norm"
                 and kind(i + 1) == "activation" for i in range(count)]
    for i, current in enumerate(kinds):
        if current == "activation" and (kind(i - 1) == "norm" or (i > 0 and fused_add[i - 1])):
            plan[i] = FUSED_AWAY
        elif fused_add[i]:
            plan[i] = CONV_NORM_ADD if fusion == "conv_norm" else FUSED_ADD
    if fusion == "conv_norm":
        for i, current in enumerate(kinds):
            if current != "norm" or kind(i - 1) != "conv":
                continue
            following = i + 1
            while kind(following) == "activation":
                following += 1
            plan[i] = (CONV_NORM if kind(following) in ("conv", "elementwise")
                       else CONV_NORM_APPLIED)
    return plan


#: A tensor-core convolution phase on NCHW tensors: transpose the input-side operand
#: in (read, write) and the output-side one (in or out), each its own kernel.
NCHW_TRANSPOSES = (MemoryPass(x=2, y=0), MemoryPass(x=0, y=2))


@dataclass(frozen=True)
class GemmConstants:
    """Saturating efficiency of one GEMM or convolution at one precision."""

    peak_fraction: float
    half_work_flop: float


@dataclass(frozen=True)
class ComputeConstants:
    """What the compute model needs to know about one GPU beyond its datasheet."""

    #: Asymptotic bandwidth a streaming kernel achieves, bytes/s.
    memory_bandwidth_Bps: float
    #: Bytes at which a memory-bound kernel reaches half that bandwidth.
    memory_half_bytes: float
    #: Least time one kernel takes as the framework issues it.
    kernel_launch_s: float
    #: Per training precision: efficiency curve of matrix kernels.
    gemm: Mapping[str, GemmConstants]
    #: Bandwidth of the fused optimizer update, bytes/s.
    optimizer_update_Bps: float
    #: Fraction of the GEMM curve's rate that convolutions reach (cuDNN from a
    #: framework, against cuBLAS GEMMs): one number for every matrix unit, or a table
    #: ``{"tensor": ..., "simt": ...}`` (see :func:`matrix_unit`). Always from
    #: ``defaults.toml``, as the calibration harness times GEMMs only.
    conv_fraction_of_gemm: float | Mapping[str, float] = 1.0
    #: How many times fewer multiplies cuDNN's Winograd/FFT algorithms execute than
    #: direct convolution counts, for 3x3 stride-1 convolutions on SIMT units (see
    #: :func:`winograd_eligible`); 1 runs every convolution as an implicit GEMM.
    winograd_reduction: float = 1.0
    #: Output pixels a Winograd-eligible convolution needs in one batch (batch x output
    #: height x width) before cuDNN's autotuner picks a Winograd algorithm over the
    #: implicit-GEMM one; smaller layers run direct. 0 lets every eligible layer use it.
    winograd_min_pixels: float = 0.0
    #: Output columns (GEMM n: output channels, output features) one thread-block tile
    #: of a matrix kernel covers; a layer whose n is not a multiple wastes the rest of
    #: its last tile. 1 leaves tile quantization out.
    tile_n: int = 1
    #: Per framework id: host time per iteration that no kernel hides (see
    #: ``defaults.toml``, ``iteration_overhead_ms``); frameworks not listed take none.
    #: Always from ``defaults.toml``: it belongs to the framework, not the GPU.
    iteration_overhead_s: Mapping[str, float] = field(default_factory=dict)
    #: Where the constants came from.
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gemm", MappingProxyType(dict(self.gemm)))
        for name in ("memory_bandwidth_Bps", "kernel_launch_s", "optimizer_update_Bps"):
            require_number(f"calibration.{name}", getattr(self, name), minimum=0.0,
                           exclusive_minimum=True)
        require_number("calibration.memory_half_bytes", self.memory_half_bytes, minimum=0.0)
        fractions = self.conv_fraction_of_gemm
        if isinstance(fractions, Mapping):
            object.__setattr__(self, "conv_fraction_of_gemm",
                               MappingProxyType(dict(fractions)))
            for unit, fraction in fractions.items():
                require_choice("calibration.conv_fraction_of_gemm", unit, MATRIX_UNITS)
                require_number(f"calibration.conv_fraction_of_gemm.{unit}", fraction,
                               minimum=0.0, maximum=1.0, exclusive_minimum=True)
        else:
            require_number("calibration.conv_fraction_of_gemm", fractions, minimum=0.0,
                           maximum=1.0, exclusive_minimum=True)
        require_number("calibration.winograd_reduction", self.winograd_reduction,
                       minimum=1.0)
        require_number("calibration.winograd_min_pixels", self.winograd_min_pixels,
                       minimum=0.0)
        require_int("calibration.tile_n", self.tile_n, minimum=1)
        object.__setattr__(self, "iteration_overhead_s",
                           MappingProxyType(dict(self.iteration_overhead_s)))
        for framework_id, overhead_s in self.iteration_overhead_s.items():
            require_choice("calibration.iteration_overhead_s framework", framework_id,
                           FRAMEWORKS)
            require_number(f"calibration.iteration_overhead_s.{framework_id}", overhead_s,
                           minimum=0.0)
        for precision, curve in self.gemm.items():
            require_number(f"calibration.gemm.{precision}.peak_fraction", curve.peak_fraction,
                           minimum=0.0, maximum=1.0, exclusive_minimum=True)
            require_number(f"calibration.gemm.{precision}.half_work_flop",
                           curve.half_work_flop, minimum=0.0)

    def conv_fraction(self, unit: str) -> float:
        """Fraction of the GEMM rate convolutions reach on a ``"tensor"``/``"simt"`` unit."""
        fractions = self.conv_fraction_of_gemm
        if isinstance(fractions, Mapping):
            return fractions.get(unit, 1.0)
        return fractions

    def gemm_curve(self, precision: str) -> GemmConstants:
        if precision not in self.gemm:
            raise ConfigError("precision", precision,
                              "a precision with GEMM constants: " + ", ".join(self.gemm))
        return self.gemm[precision]


def _defaults_path() -> Path:
    return data_dir() / "calibration" / "defaults.toml"


@cache
def defaults_table() -> dict[str, Any]:
    """Parsed ``defaults.toml``, cached and shared: copy it before changing it."""
    return read_toml(_defaults_path())


#: Kinds of unit matrix math runs on, as :func:`matrix_unit` tells them.
MATRIX_UNITS = ("tensor", "simt")
#: SM designs whose convolutions defaults.toml may give their own efficiency (see there).
SM_DESIGNS = ("unified_l1", "smx")


def matrix_unit(gpu: GPUSpec, precision: str) -> str:
    """``"tensor"`` when matrix math at this precision runs on tensor/matrix cores.

    Told from the catalog alone: the matrix rate exceeds the general-purpose rate.
    """
    matrix = gpu.matrix_peak_flops_per_s(precision)
    return "tensor" if matrix > gpu.vector_peak_flops_per_s(precision) else "simt"


def default_constants(gpu: GPUSpec, table: Mapping[str, Any] | None = None
                      ) -> ComputeConstants:
    """Datasheet derating of ``defaults.toml``, one rule for every GPU.

    ``table`` replaces the file's parsed content (a refit of its constants).
    """
    where = str(_defaults_path())
    if table is None:
        table = defaults_table()
    efficiency = require_number(f"{where}: memory_efficiency", table.get("memory_efficiency"),
                                minimum=0.0, maximum=1.0, exclusive_minimum=True)
    bandwidth_Bps = gpu.memory_bandwidth_Bps * efficiency
    memory_half_s = require_number(f"{where}: memory_half_us", table.get("memory_half_us"),
                                   minimum=0.0) * 1e-6
    gemm_half_s = require_number(f"{where}: gemm_half_us", table.get("gemm_half_us"),
                                 minimum=0.0) * 1e-6
    gemm = {}
    for precision in gpu.precisions:
        unit = matrix_unit(gpu, precision)
        fraction = require_number(f"{where}: gemm.{unit}.peak_fraction",
                                  table.get("gemm", {}).get(unit, {}).get("peak_fraction"),
                                  minimum=0.0, maximum=1.0, exclusive_minimum=True)
        rate = gpu.matrix_peak_flops_per_s(precision) * fraction
        gemm[precision] = GemmConstants(peak_fraction=fraction,
                                        half_work_flop=rate * gemm_half_s)
    return ComputeConstants(
        memory_bandwidth_Bps=bandwidth_Bps,
        memory_half_bytes=bandwidth_Bps * memory_half_s,
        kernel_launch_s=require_number(f"{where}: kernel_launch_us",
                                       table.get("kernel_launch_us"), minimum=0.0,
                                       exclusive_minimum=True) * 1e-6,
        gemm=gemm,
        optimizer_update_Bps=bandwidth_Bps,
        conv_fraction_of_gemm={unit: _conv_fraction(table, unit, gpu, where)
                               for unit in MATRIX_UNITS},
        tile_n=require_int(f"{where}: gemm.tile_n", table.get("gemm", {}).get("tile_n"),
                           minimum=1),
        winograd_reduction=require_number(
            f"{where}: gemm.simt.winograd_reduction",
            table.get("gemm", {}).get("simt", {}).get("winograd_reduction"), minimum=1.0),
        winograd_min_pixels=require_number(
            f"{where}: gemm.simt.winograd_min_pixels",
            table.get("gemm", {}).get("simt", {}).get("winograd_min_pixels"), minimum=0.0),
        iteration_overhead_s=iteration_overheads_s(table),
        source=where,
    )


def iteration_overheads_s(table: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Host time per step by framework id, seconds: ``iteration_overhead_ms`` of
    ``defaults.toml`` (or of ``table``, a refit of its content)."""
    where = str(_defaults_path())
    if table is None:
        table = defaults_table()
    overheads = table.get("iteration_overhead_ms", {})
    if not isinstance(overheads, Mapping):
        raise ConfigError(f"{where}: iteration_overhead_ms", overheads,
                          "a table of framework id = milliseconds")
    return {
        require_choice(f"{where}: iteration_overhead_ms framework", framework_id, FRAMEWORKS):
        require_number(f"{where}: iteration_overhead_ms.{framework_id}", overhead_ms,
                       minimum=0.0) * 1e-3
        for framework_id, overhead_ms in overheads.items()
    }


def _conv_fraction(table: Mapping[str, Any], unit: str, gpu: GPUSpec, where: str) -> float:
    """``gemm.<unit>.conv_fraction``, or the value of the GPU's SM design where the unit's
    table lists its architecture: ``conv_fraction_unified_l1`` under
    ``unified_l1_architectures``, ``conv_fraction_smx`` under ``smx_architectures``."""
    unit_table = table.get("gemm", {}).get(unit, {})
    key = "conv_fraction"
    for design in SM_DESIGNS:
        if gpu.architecture in unit_table.get(f"{design}_architectures", ()):
            key = f"conv_fraction_{design}"
    return require_number(f"{where}: gemm.{unit}.{key}", unit_table.get(key), minimum=0.0,
                          maximum=1.0, exclusive_minimum=True)


def calibration_path(gpu: GPUSpec) -> Path:
    return data_dir() / "calibration" / f"{gpu.id}.json"


def constants_from_calibration(gpu: GPUSpec, calibration: Mapping[str, Any],
                               source: str = "calibration") -> ComputeConstants:
    """Constants from a calibration file's dict (or its ``constants`` section).

    A precision the calibration did not measure keeps its default GEMM curve.
    """
    if not isinstance(calibration, Mapping):
        raise ConfigError("calibration", calibration,
                          "'auto', None, a calibration dict or ComputeConstants")
    if "gpu_id" in calibration and calibration["gpu_id"] != gpu.id:
        raise ConfigError("calibration.gpu_id", calibration["gpu_id"],
                          f"the id of the GPU being modelled, {gpu.id!r}")
    constants = calibration.get("constants", calibration)
    defaults = default_constants(gpu)
    gemm = dict(defaults.gemm)
    measured_gemm = constants.get("gemm") or {}
    if not isinstance(measured_gemm, Mapping):
        raise ConfigError("calibration.constants.gemm", measured_gemm,
                          "a table of precision = {peak_fraction, half_work_flop}")
    for precision, curve in measured_gemm.items():
        if precision not in gemm:
            continue
        if not isinstance(curve, Mapping) or {"peak_fraction", "half_work_flop"} - curve.keys():
            raise ConfigError(f"calibration.constants.gemm.{precision}", curve,
                              "a table with peak_fraction and half_work_flop")
        gemm[precision] = GemmConstants(curve["peak_fraction"], curve["half_work_flop"])

    def value(name: str) -> Any:
        if name not in constants:
            raise ConfigError(f"calibration.constants.{name}", None,
                              "a value (the field is required)")
        return constants[name]

    return ComputeConstants(
        memory_bandwidth_Bps=value("memory_bandwidth_Bps"),
        memory_half_bytes=value("memory_half_bytes"),
        kernel_launch_s=value("kernel_launch_s"),
        gemm=gemm,
        optimizer_update_Bps=constants.get("optimizer_update_Bps")
        or value("memory_bandwidth_Bps"),
        conv_fraction_of_gemm=defaults.conv_fraction_of_gemm,
        winograd_reduction=defaults.winograd_reduction,
        winograd_min_pixels=defaults.winograd_min_pixels,
        iteration_overhead_s=defaults.iteration_overhead_s,
        tile_n=defaults.tile_n,
        source=source,
    )


def compute_constants(gpu: GPUSpec, calibration: Any = "auto") -> ComputeConstants:
    """The constants for ``gpu``.

    ``calibration``: ``"auto"`` reads ``data/calibration/<gpu-id>.json`` when it exists
    and falls back to the defaults; ``None`` forces the defaults; a dict is a calibration
    file's content (or its ``constants`` section); a :class:`ComputeConstants` is used
    as is.
    """
    if isinstance(calibration, ComputeConstants):
        return calibration
    if calibration is None:
        return default_constants(gpu)
    if isinstance(calibration, str):
        if calibration != "auto":
            raise ConfigError("calibration", calibration,
                              "'auto', None, a calibration dict or ComputeConstants")
        path = calibration_path(gpu)
        if not path.exists():
            return default_constants(gpu)
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError("calibration file", str(path), f"valid JSON ({exc})") from None
        return constants_from_calibration(gpu, content, source=str(path))
    return constants_from_calibration(gpu, calibration)


def memory_time_s(size_bytes: float, constants: ComputeConstants,
                  bandwidth_Bps: float | None = None) -> float:
    """A streaming kernel: ``bytes / (bandwidth * saturating efficiency of bytes)``."""
    if size_bytes <= 0:
        return 0.0
    if bandwidth_Bps is None:
        bandwidth_Bps = constants.memory_bandwidth_Bps
    efficiency = saturating_efficiency(size_bytes, 1.0, constants.memory_half_bytes)
    return size_bytes / (bandwidth_Bps * efficiency)


def gemm_time_s(flop: float, size_bytes: float, peak_flops_per_s: float,
                curve: GemmConstants, constants: ComputeConstants,
                fraction_scale: float = 1.0) -> float:
    """One matrix kernel: the slower of its FLOP and its bytes, and at least a launch.

    ``fraction_scale`` scales the asymptotic fraction (convolutions against GEMMs).
    """
    efficiency = saturating_efficiency(flop, curve.peak_fraction * fraction_scale,
                                       curve.half_work_flop)
    compute_s = flop / (peak_flops_per_s * efficiency)
    return max(compute_s, memory_time_s(size_bytes, constants), constants.kernel_launch_s)


#: Filters cuDNN runs with fast algorithms at stride 1: WINOGRAD (3x3) and
#: WINOGRAD_NONFUSED (3x3 and 5x5, fp32), FFT and FFT_TILING (any filter up to 32x32
#: at stride 1; cuDNN developer guide, "Supported algorithms" per convolution call).
FAST_CONV_KERNELS = ((3, 3), (5, 5))


def winograd_eligible(layer: Layer) -> bool:
    """A convolution cuDNN can run with Winograd's minimal filtering (Lavin & Gray 2016)
    or an FFT: a 3x3 or 5x5 filter at stride 1."""
    return layer.kind == "conv" and layer.kernel in FAST_CONV_KERNELS and layer.stride == 1


def runs_winograd(layer: Layer, batch_size: int, constants: ComputeConstants) -> bool:
    """Whether an autotuned cuDNN runs this layer with a Winograd algorithm: an eligible
    filter, and enough output pixels in the batch (``winograd_min_pixels``). Winograd
    turns the output into tiles and runs one batched GEMM per transformed point over
    them; on a small feature map at a small batch those GEMMs are too short to pay for
    the transforms, and the implicit-GEMM direct convolution is faster."""
    if not winograd_eligible(layer):
        return False
    pixels = batch_size * layer.gemm[0] if layer.gemm is not None else math.inf
    return pixels >= constants.winograd_min_pixels


def tile_quantization(columns: int, tile_n: int) -> float:
    """Useful fraction of the tiles a GEMM with ``columns`` output columns runs:
    ``n / (ceil(n / tile) * tile)`` (NVIDIA Matrix Multiplication Background User's
    Guide, "Tile Quantization")."""
    return columns / (math.ceil(columns / tile_n) * tile_n)


def _memory_passes_s(passes: tuple[MemoryPass, ...], input_bytes: float, output_bytes: float,
                     constants: ComputeConstants) -> float:
    return sum(
        max(memory_time_s(p.x * input_bytes + p.y * output_bytes, constants),
            constants.kernel_launch_s)
        for p in passes
    )


def resolve_memory_format(precision: str, memory_format: str = "auto",
                          framework: str = DEFAULT_FRAMEWORK) -> str:
    """``memory_format``, or for ``"auto"`` the layout ``framework`` trains ``precision`` in."""
    if memory_format == "auto":
        return framework_by_id(framework, "framework").memory_format(precision)
    return require_choice("memory_format", memory_format, MEMORY_FORMATS + ("auto",))


def _check_inputs(gpu: GPUSpec, batch_size: int, precision: str) -> None:
    require_int("batch_size", batch_size, minimum=1)
    gpu.check_precision(precision)


def layer_times(workload: Workload, gpu: GPUSpec, batch_size: int, precision: str,
                calibration: Any = "auto", memory_format: str = "auto",
                framework: str = DEFAULT_FRAMEWORK) -> pd.DataFrame:
    """Seconds per phase of each layer for one iteration, one row per layer, forward order.

    Columns: name, kind, forward_s, backward_input_s, backward_weight_s, update_s,
    gradient_bytes. The first layer computes no input gradient. For a matmul of two
    activations (attention), ``backward_weight_s`` is the gradient of the second operand.

    ``framework`` (an id of :data:`models.frameworks.FRAMEWORKS`) decides which
    memory-bound kernels are fused (:func:`memory_traffic_plan`) and, with
    ``memory_format="auto"``, the layout. Its per-iteration host overhead
    (``ComputeConstants.iteration_overhead_s``), time in which the GPU waits on the
    training loop, is charged to the first layer's forward pass.

    ``memory_format`` (``"nchw"``, ``"nhwc"``, or ``"auto"``: the framework's layout for
    the precision) matters for convolutions on tensor cores: on NCHW
    tensors cuDNN transposes each operand to NHWC and the result back (the
    ``nchwToNhwcKernel``/``nhwcToNchwKernel`` pairs seen in profiles), two extra memory
    passes over the convolution's input-side and output-side tensors per phase.
    """
    _check_inputs(gpu, batch_size, precision)
    unit = matrix_unit(gpu, precision)
    transposes = (resolve_memory_format(precision, memory_format, framework) == "nchw"
                  and unit == "tensor")
    fusion = framework_by_id(framework, "framework").fusion(precision)
    constants = compute_constants(gpu, calibration)
    table = layer_table(workload, batch_size, precision)
    traffic_plan = memory_traffic_plan(tuple(table["kind"]), fusion)
    element_bytes = ACTIVATION_BYTES[precision]
    peak = gpu.matrix_peak_flops_per_s(precision)
    curve = constants.gemm_curve(precision)
    update_kernels = [SGD_MOMENTUM_BYTES_PER_PARAM]
    if precision in MIXED_PRECISIONS:
        update_kernels.append(AMP_CAST_BYTES_PER_PARAM)

    rows = []
    for index, (layer, spec) in enumerate(zip(table.itertuples(index=False), workload.layers,
                                              strict=True)):
        traffic = traffic_plan[index]
        if traffic is not None:
            forward_s = _memory_passes_s(traffic.forward, layer.input_bytes,
                                         layer.activation_bytes, constants)
            backward_input_s = _memory_passes_s(traffic.backward_input, layer.input_bytes,
                                                layer.activation_bytes, constants)
            backward_weight_s = _memory_passes_s(traffic.backward_weight, layer.input_bytes,
                                                 layer.activation_bytes, constants)
        else:
            # Forward, input gradient and weight gradient are one GEMM each of the same
            # FLOP, each touching one input-sized, one output-sized and one weight-sized
            # tensor (implicit GEMM: convolutions do not materialize im2col).
            size_bytes = (layer.input_bytes + layer.activation_bytes
                          + layer.params * element_bytes)
            is_conv = layer.kind == "conv"
            flop = layer.forward_flops
            if unit == "simt" and runs_winograd(spec, batch_size, constants):
                # The transforms are memory-side work; the roofline's bytes keep them.
                flop /= constants.winograd_reduction
            scale = constants.conv_fraction(unit) if is_conv else 1.0
            if spec.gemm is not None:
                scale *= tile_quantization(spec.gemm[1], constants.tile_n)
            forward_s = gemm_time_s(flop, size_bytes, peak, curve, constants, scale)
            if transposes and is_conv:
                forward_s += _memory_passes_s(NCHW_TRANSPOSES, layer.input_bytes,
                                              layer.activation_bytes, constants)
            backward_input_s = forward_s
            backward_weight_s = forward_s
        if index == 0:
            backward_input_s = 0.0
            # The host's own share of the step comes before the GPU can start it.
            forward_s += constants.iteration_overhead_s.get(framework, 0.0)
        update_s = 0.0
        if layer.params > 0:
            update_s = sum(
                max(memory_time_s(layer.params * per_param, constants,
                                  constants.optimizer_update_Bps),
                    constants.kernel_launch_s)
                for per_param in update_kernels
            )
        rows.append({
            "name": layer.name,
            "kind": layer.kind,
            "forward_s": forward_s,
            "backward_input_s": backward_input_s,
            "backward_weight_s": backward_weight_s,
            "update_s": update_s,
            "gradient_bytes": layer.gradient_bytes,
        })
    return pd.DataFrame(rows, columns=list(LAYER_TIME_COLUMNS))


def iteration_compute_time_s(workload: Workload, gpu: GPUSpec, batch_size: int,
                             precision: str, calibration: Any = "auto",
                             memory_format: str = "auto",
                             framework: str = DEFAULT_FRAMEWORK) -> float:
    """Forward, backward and optimizer update of one iteration on one GPU, seconds."""
    times = layer_times(workload, gpu, batch_size, precision, calibration, memory_format,
                        framework)
    return float(times[["forward_s", "backward_input_s", "backward_weight_s",
                        "update_s"]].to_numpy().sum())


def training_throughput_samples_per_s(workload: Workload, gpu: GPUSpec, batch_size: int,
                                      precision: str, calibration: Any = "auto",
                                      memory_format: str = "auto",
                                      framework: str = DEFAULT_FRAMEWORK) -> float:
    """Samples per second one GPU trains, compute alone (no input pipeline, no comms)."""
    return batch_size / iteration_compute_time_s(workload, gpu, batch_size, precision,
                                                 calibration, memory_format, framework)
