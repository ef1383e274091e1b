"""Framework fusion levels: the memory passes each one leaves, in closed form."""

import pytest

from models import catalog, compute
from models.compute import ComputeConstants, GemmConstants, memory_traffic_plan
from models.errors import ConfigError
from models.frameworks import FRAMEWORKS, framework, framework_from_source
from models.workloads import Layer, Workload, workload

A100 = catalog.gpu("a100-sxm4-80gb")
N = 1_000_000
BATCH = 4
#: Bytes of one fp16 tensor of N elements per sample.
TENSOR = BATCH * N * 2
#: No launch floor, no half-bandwidth size: a pass over ``b`` bytes takes b / 1e12 s.
FIXED = ComputeConstants(memory_bandwidth_Bps=1e12, memory_half_bytes=0.0,
                         kernel_launch_s=1e-12,
                         gemm={p: GemmConstants(0.8, 0.0) for p in ("fp16", "tf32")},
                         optimizer_update_Bps=1e12)


def conv(name: str) -> Layer:
    return Layer(name, "conv", params=64, forward_flops=2.0 * 64 * N, input_elements=N,
                 output_elements=N, gemm=(N // 8, 8, 8), kernel=(1, 1), stride=1)


def memory(name: str, kind: str, inputs: int = 1) -> Layer:
    return Layer(name, kind, params=2 if kind == "norm" else 0, forward_flops=float(N),
                 input_elements=inputs * N, output_elements=N)


#: A bottleneck block's tail and the next block's head: conv, bn, add, relu, conv, bn,
#: relu, pool.
BLOCK = (conv("conv_a"), memory("bn_a", "norm"), memory("add", "elementwise", inputs=2),
         memory("relu_a", "activation"), conv("conv_b"), memory("bn_b", "norm"),
         memory("relu_b", "activation"), memory("pool", "pool"))


def passes(fusion_framework: str) -> dict[str, tuple[float, float]]:
    """Per memory layer: (forward, backward) traffic in tensors of TENSOR bytes."""
    network = Workload("block", "block", "test", BLOCK, (1,), "none", 1, "hand-built")
    times = compute.layer_times(network, A100, BATCH, "fp16", FIXED,
                                framework=fusion_framework).set_index("name")
    return {name: (round(times.loc[name, "forward_s"] * 1e12 / TENSOR, 9),
                   round((times.loc[name, "backward_input_s"]
                          + times.loc[name, "backward_weight_s"]) * 1e12 / TENSOR, 9))
            for name in ("bn_a", "add", "relu_a", "bn_b", "relu_b", "pool")}


def test_eager_frameworks_run_every_kernel():
    eager = passes("pytorch")
    # Batch norm 3 forward (stats, normalize), 5 backward (reduction, input gradient);
    # the two-input add 3 each way; ReLU 2 forward, 3 backward.
    assert eager == {"bn_a": (3, 5), "add": (3, 3), "relu_a": (2, 3), "bn_b": (3, 5),
                     "relu_b": (2, 3), "pool": (2, 2)}
    assert passes("tensorflow") == eager


def test_norm_activation_folds_relu_and_add_into_the_batch_norm():
    fused = passes("mxnet")
    assert fused == {"bn_a": (3, 5), "add": (1, 1), "relu_a": (0, 0), "bn_b": (3, 5),
                     "relu_b": (0, 0), "pool": (2, 2)}


def test_conv_norm_drops_batch_norm_forward_passes_where_a_conv_or_add_applies_it():
    fused = passes("nvidia-mlperf")
    # bn_a is applied in the block's fused add (3 passes: two reads, one write); bn_b
    # feeds a pool, so its scale-bias-ReLU keeps one read-write pass.
    assert fused == {"bn_a": (0, 5), "add": (3, 1), "relu_a": (0, 0), "bn_b": (2, 5),
                     "relu_b": (0, 0), "pool": (2, 2)}


def test_xla_fuses_in_every_precision():
    assert passes("tensorflow-xla") == passes("mxnet")
    xla = framework("tensorflow-xla")
    assert {xla.fusion(p) for p in ("fp32", "tf32", "fp16")} == {"norm_activation"}


def test_mxnet_fuses_only_in_half_precision_and_keeps_nchw_for_tf32():
    mxnet = framework("mxnet")
    assert mxnet.fusion("fp16") == "norm_activation"
    assert mxnet.fusion("tf32") == "none"
    assert mxnet.memory_format("tf32") == "nchw"
    assert mxnet.memory_format("fp16") == "nhwc"
    network = workload("resnet50")
    for precision, faster in (("fp16", True), ("tf32", False)):
        eager = compute.iteration_compute_time_s(network, A100, 64, precision, None)
        fused = compute.iteration_compute_time_s(network, A100, 64, precision, None,
                                                 framework="mxnet")
        assert (fused < eager) if faster else fused == pytest.approx(eager, rel=1e-12)


def test_fusion_leaves_transformers_alone():
    network = workload("bert-base")
    # Kernels only: a framework's per-iteration host overhead is another matter.
    kernels_only = {**compute.defaults_table(), "iteration_overhead_ms": {}}
    constants = compute.default_constants(A100, kernels_only)
    times = {name: compute.iteration_compute_time_s(network, A100, 8, "fp16", constants,
                                                    framework=name)
             for name in FRAMEWORKS}
    assert max(times.values()) == pytest.approx(min(times.values()), rel=1e-12)


def test_plan_rejects_an_unknown_level_and_frameworks_an_unknown_id():
    with pytest.raises(ConfigError, match="fusion"):
        memory_traffic_plan(("norm",), "everything")
    with pytest.raises(ConfigError, match="framework.*'pytorch'"):
        compute.layer_times(workload("resnet18"), A100, 8, "fp16", None, framework="pytorh")


@pytest.mark.parametrize("source, expected", [
    ("MLPerf Training v3.0 result log, ... MXNet, DALI, Horovod", "nvidia-mlperf"),
    ("NVIDIA DeepLearningExamples MxNet/Classification/RN50v1.5/README.md", "mxnet"),
    ("Apache MXNet example/image-classification/README.md", "mxnet-module"),
    ("TensorFlow Performance Benchmarks page", "tensorflow"),
    ("DeepLearningExamples TensorFlow/Classification (TensorFlow 1.x, XLA)", "tensorflow-xla"),
    ("Horovod docs, synthetic data, tf_cnn_benchmarks", "tensorflow"),
    ("NVIDIA DeepLearningExamples PyTorch/LanguageModeling/BERT", "pytorch"),
    ("Johnson, cnn-benchmarks — Lua Torch with cuDNN (cudnn.torch)", "torch7"),
    ("Goyal et al. 2017", None),
])
def test_framework_is_read_from_the_words_of_a_citation(source, expected):
    assert framework_from_source(source) == expected
