"""Workloads: per-layer tables computed from the architecture.

FLOP convention: one multiply-add is 2 FLOP. Counts are per sample; ``layer_table``
scales them to a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd

from models.errors import require_choice, require_int
from models.hardware import ACTIVATION_BYTES

#: Layers bound by matrix-multiply throughput.
MATRIX_KINDS = ("conv", "linear", "matmul")
#: Layers bound by memory bandwidth.
MEMORY_KINDS = ("embedding", "norm", "activation", "pool", "softmax", "elementwise")
LAYER_KINDS = MATRIX_KINDS + MEMORY_KINDS
#: Bytes of one gradient element as data-parallel frameworks all-reduce it.
GRADIENT_BYTES_PER_PARAM = 4


@dataclass(frozen=True)
class Layer:
    """One layer's forward pass for one sample."""

    name: str
    kind: str
    params: int
    forward_flops: float
    input_elements: int
    output_elements: int
    #: Matrix layers: the GEMM it lowers to, (m, n, k) with m counted per sample
    #: (conv: output pixels; transformer linear: tokens), so a batch runs (B*m, n, k).
    gemm: tuple[int, int, int] | None = None
    #: Convolutions: filter (height, width) and stride, which decide the algorithms
    #: cuDNN may pick (Winograd needs a 3x3 filter at stride 1); None elsewhere.
    kernel: tuple[int, int] | None = None
    stride: int | None = None

    @property
    def is_matrix(self) -> bool:
        return self.kind in MATRIX_KINDS


@dataclass(frozen=True)
class Workload:
    id: str
    name: str
    task: str
    layers: tuple[Layer, ...]
    sample_shape: tuple[int, ...]
    dataset: str
    dataset_samples: int
    source: str

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def forward_flops_per_sample(self) -> float:
        return sum(layer.forward_flops for layer in self.layers)


def _builders() -> dict[str, object]:
    from models.architectures import cnn, transformer

    return {**cnn.BUILDERS, **transformer.BUILDERS}


@cache
def workloads() -> dict[str, Workload]:
    """Every workload in the catalog, built from its architecture."""
    return {workload_id: build() for workload_id, build in _builders().items()}


def workload(workload_id: str, field_name: str = "workload.model") -> Workload:
    return workloads()[require_choice(field_name, workload_id, workloads())]


def layer_table(workload: Workload, batch_size: int, precision: str = "fp32") -> pd.DataFrame:
    """One row per layer, in forward order, for a batch: FLOP and bytes moved.

    Gradients are counted in fp32 whatever the training precision, as PyTorch DDP and
    automatic mixed precision keep fp32 parameters and all-reduce fp32 gradients.
    """
    require_int("batch_size", batch_size, minimum=1)
    require_choice("precision", precision, ACTIVATION_BYTES)
    element_bytes = ACTIVATION_BYTES[precision]
    rows = [
        {
            "name": layer.name,
            "kind": layer.kind,
            "params": layer.params,
            "forward_flops": layer.forward_flops * batch_size,
            "input_bytes": layer.input_elements * batch_size * element_bytes,
            "activation_bytes": layer.output_elements * batch_size * element_bytes,
            "gradient_bytes": layer.params * GRADIENT_BYTES_PER_PARAM,
        }
        for layer in workload.layers
    ]
    return pd.DataFrame(rows)
