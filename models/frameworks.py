"""Training frameworks: which memory-bound kernels they fuse, and in which layout.

The same network on the same GPU runs different kernels under different frameworks.
What decides the compute model is how many passes over activation memory each one
makes: an eager framework runs batch norm, ReLU and the residual add as separate
kernels, while tuned recipes fold them together. Each framework here is a fact read from
its published training scripts, not a fitted constant.

Fusion levels (what happens to a convolution's batch norm and what follows it):

``none``
    Every layer its own kernels (PyTorch eager, TensorFlow's tf_cnn_benchmarks with
    ``FusedBatchNorm``, which fuses the normalization's own arithmetic but not the ReLU).
``norm_activation``
    The ReLU after a batch norm, and a residual add between a batch norm and its ReLU,
    run inside the batch-norm kernels (MXNet's ``BatchNorm(act_type='relu')`` and
    ``BatchNormAddRelu``; XLA's fused normalize-add-ReLU kernel): no ReLU pass, and
    the add costs one extra read of the addend forward and one extra write of its
    gradient backward.
``conv_norm``
    On top of that, a batch norm after a convolution takes its statistics in the
    convolution's epilogue and applies scale, bias and ReLU in the next convolution's
    prologue or in the block's fused add (NVIDIA's MLPerf ResNet-50: ``NormConvolution``,
    ``BNStatsFinalize``, ``ScaleBiasAddRelu``). Forward, only the block-ending add makes
    a pass; backward keeps the batch norm's reductions and input gradient.

Fusion only rewrites batch-norm/ReLU/add patterns of convolutional networks; a
transformer's layers (layer norm after an add, GELU after a linear) keep their kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from models.errors import require_choice

FUSION_LEVELS = ("none", "norm_activation", "conv_norm")

#: Activation layouts a framework may train in.
MEMORY_FORMATS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Framework:
    id: str
    name: str
    #: Fusion level per training precision; precisions not listed run ``default_fusion``.
    fusion_by_precision: Mapping[str, str]
    default_fusion: str
    #: Precisions the recipe trains channels-last (NHWC); the others run NCHW.
    channels_last_precisions: tuple[str, ...]
    source: str

    def fusion(self, precision: str) -> str:
        return self.fusion_by_precision.get(precision, self.default_fusion)

    def memory_format(self, precision: str) -> str:
        return "nhwc" if precision in self.channels_last_precisions else "nchw"


_MIXED = ("fp16", "bf16", "fp8")

FRAMEWORKS: Mapping[str, Framework] = MappingProxyType({
    "pytorch": Framework(
        id="pytorch", name="PyTorch (eager, DDP)",
        fusion_by_precision={}, default_fusion="none",
        # DeepLearningExamples ResNet-50 v1.5 PyTorch pairs --amp with
        # --memory-format nhwc; fp32/tf32 keep the NCHW default.
        channels_last_precisions=_MIXED,
        source="NVIDIA DeepLearningExamples PyTorch/Classification/ConvNets "
               "(main.py --amp --memory-format nhwc); torch.nn.BatchNorm2d and ReLU "
               "are separate modules",
    ),
    "tensorflow": Framework(
        id="tensorflow", name="TensorFlow (tf_cnn_benchmarks, Horovod)",
        fusion_by_precision={}, default_fusion="none",
        channels_last_precisions=_MIXED,
        source="tensorflow/benchmarks scripts/tf_cnn_benchmarks (data_format NCHW on "
               "GPU, tf.nn.fused_batch_norm followed by tf.nn.relu)",
    ),
    "tensorflow-xla": Framework(
        id="tensorflow-xla", name="TensorFlow with XLA (NVIDIA DeepLearningExamples recipe)",
        # XLA compiles batch norm's normalization, the ReLU and the residual add into one
        # elementwise kernel after the statistics reduction, in every precision.
        fusion_by_precision={}, default_fusion="norm_activation",
        channels_last_precisions=_MIXED,
        source="NVIDIA DeepLearningExamples TensorFlow/Classification/ConvNets/"
               "resnet50v1.5 (--xla; README known issues: 'Performance without XLA "
               "enabled is low due to BN + ReLU fusion bug')",
    ),
    "mxnet": Framework(
        id="mxnet", name="MXNet (NVIDIA DeepLearningExamples recipe)",
        # The runner adds --fuse-bn-relu 1 --fuse-bn-add-relu 1 and NHWC layouts for
        # float16 only; float32 (TF32 on A100) runs unfused NCHW.
        fusion_by_precision={"fp16": "norm_activation", "bf16": "norm_activation"},
        default_fusion="none",
        channels_last_precisions=_MIXED,
        source="NVIDIA DeepLearningExamples MxNet/Classification/RN50v1.5/runner "
               "(float16: --fuse-bn-relu 1 --fuse-bn-add-relu 1, conv/batchnorm/pooling "
               "layout NHWC) and models.py (BatchNormAddRelu)",
    ),
    "mxnet-module": Framework(
        id="mxnet-module", name="Apache MXNet example scripts (Module API)",
        fusion_by_precision={}, default_fusion="none",
        channels_last_precisions=(),
        source="apache/mxnet example/image-classification (train_imagenet.py, "
               "common/fit.py: Module.fit with a kvstore; symbols/resnet.py and "
               "inception-v3.py: BatchNorm and Activation as separate operators, NCHW)",
    ),
    "torch7": Framework(
        id="torch7", name="Lua Torch 7 with cudnn.torch",
        fusion_by_precision={}, default_fusion="none",
        channels_last_precisions=(),
        source="torch/nn and soumith/cudnn.torch (cudnn.convert: every nn module its own "
               "cuDNN call, SpatialBatchNormalization and ReLU separate, NCHW); "
               "jcjohnson/cnn-benchmarks cnn_benchmark.lua sets cudnn.benchmark = true",
    ),
    "nvidia-mlperf": Framework(
        id="nvidia-mlperf", name="NVIDIA MLPerf Training submission (MXNet ResNet-50)",
        fusion_by_precision={}, default_fusion="conv_norm",
        channels_last_precisions=_MIXED + ("fp32", "tf32"),
        source="mlcommons training_results (NVIDIA and partners, resnet/implementations/"
               "mxnet): NormConvolution, BNStatsFinalize and ScaleBiasAddRelu fused "
               "cuDNN kernels, NHWC",
    ),
})

DEFAULT_FRAMEWORK = "pytorch"


def framework(framework_id: str, field_name: str = "workload.framework") -> Framework:
    return FRAMEWORKS[require_choice(field_name, framework_id, FRAMEWORKS)]


#: Words in a citation that name the framework, most specific first: an MLPerf
#: submission names its framework too ("MXNet, DALI, Horovod") but runs the tuned kernels.
_SOURCE_KEYWORDS = (
    ("mlperf", "nvidia-mlperf"),
    ("example/image-classification", "mxnet-module"),
    ("mxnet", "mxnet"),
    ("xla", "tensorflow-xla"),
    ("tensorflow", "tensorflow"),
    ("tf_cnn_benchmarks", "tensorflow"),
    ("pytorch", "pytorch"),
    ("lua torch", "torch7"),
)


def framework_from_source(source: str) -> str | None:
    """The framework a measurement's citation names, or None when it names none."""
    text = source.lower()
    for word, framework_id in _SOURCE_KEYWORDS:
        if word in text:
            return framework_id
    return None
