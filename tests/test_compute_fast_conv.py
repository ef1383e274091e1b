"""Winograd/FFT convolutions on SIMT units and tile quantization: closed forms on
hand-built layers, the filter shapes the CNN builders record, bad constants."""

import pytest

from models import catalog, compute
from models.compute import ComputeConstants, GemmConstants
from models.errors import ConfigError
from models.workloads import Layer, Workload, workload

A100 = catalog.gpu("a100-sxm4-80gb")
P100 = catalog.gpu("p100-sxm2")


def conv(name: str, pixels: int, out_channels: int, in_channels: int,
         kernel: tuple[int, int], stride: int = 1) -> Layer:
    k = in_channels * kernel[0] * kernel[1]
    return Layer(name, "conv", params=out_channels * k,
                 forward_flops=2.0 * pixels * out_channels * k,
                 input_elements=pixels * in_channels * stride * stride,
                 output_elements=pixels * out_channels, gemm=(pixels, out_channels, k),
                 kernel=kernel, stride=stride)


def net(*layers: Layer) -> Workload:
    return Workload("test", "test", "test", tuple(layers), (1,), "none", 1, "hand-built")


def constants(**overrides) -> ComputeConstants:
    # Unbounded bandwidth and no fixed costs: every matrix layer is compute-bound at
    # exactly peak x peak_fraction x conv_fraction x tile quantization.
    values = dict(memory_bandwidth_Bps=1e16, memory_half_bytes=0.0, kernel_launch_s=1e-12,
                  gemm={p: GemmConstants(0.8, 0.0) for p in ("fp32", "tf32", "fp16")},
                  optimizer_update_Bps=1e16, conv_fraction_of_gemm={"simt": 0.5,
                                                                    "tensor": 0.9},
                  winograd_reduction=2.5)
    values.update(overrides)
    return ComputeConstants(**values)


SHAPES = [conv("stem", 3136, 128, 64, (3, 3)),           # first layer: no input gradient
          conv("w3x3", 3136, 128, 128, (3, 3)),
          conv("w5x5", 3136, 128, 128, (5, 5)),
          conv("s2", 3136, 128, 128, (3, 3), stride=2),
          conv("asym", 3136, 128, 128, (1, 7)),
          conv("pointwise", 3136, 128, 128, (1, 1))]


def test_fp32_3x3_and_5x5_stride_1_convolutions_do_fewer_multiplies_on_simt():
    batch = 16
    times = compute.layer_times(net(*SHAPES), P100, batch, "fp32", constants()).set_index("name")
    rate = 10.6e12 * 0.8 * 0.5
    for name, reduction in (("w3x3", 2.5), ("w5x5", 2.5), ("s2", 1.0), ("asym", 1.0),
                            ("pointwise", 1.0)):
        layer = next(layer for layer in SHAPES if layer.name == name)
        expected = batch * layer.forward_flops / reduction / rate
        assert times.loc[name, "forward_s"] == pytest.approx(expected, rel=1e-9), name
        assert times.loc[name, "backward_weight_s"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("batch", "winograd"), [(1, False), (2, False), (3, True), (16, True)])
def test_winograd_needs_enough_output_pixels_in_the_batch(batch, winograd):
    # 3136 output pixels per image against a threshold of 7000 per batch: 2 images
    # (6272) run direct, 3 (9408) run Winograd.
    layer = conv("w3x3", 3136, 128, 128, (3, 3))
    fixed = constants(winograd_min_pixels=7000)
    assert compute.runs_winograd(layer, batch, fixed) is winograd
    times = compute.layer_times(net(conv("stem", 3136, 128, 64, (1, 1)), layer), P100, batch,
                                "fp32", fixed)
    reduction = 2.5 if winograd else 1.0
    expected = batch * layer.forward_flops / reduction / (10.6e12 * 0.8 * 0.5)
    assert times.loc[1, "forward_s"] == pytest.approx(expected, rel=1e-9)
    # Ineligible filters never run it, whatever the batch.
    assert not compute.runs_winograd(conv("pointwise", 3136, 128, 128, (1, 1)), 64, fixed)


def test_tensor_core_convolutions_run_every_filter_as_implicit_gemm():
    batch = 16
    times = compute.layer_times(net(*SHAPES), A100, batch, "fp16", constants(),
                                memory_format="nhwc").set_index("name")
    rate = 312e12 * 0.8 * 0.9
    for layer in SHAPES:
        assert times.loc[layer.name, "forward_s"] == pytest.approx(
            batch * layer.forward_flops / rate, rel=1e-9), layer.name


@pytest.mark.parametrize(("channels", "tile", "useful"), [
    (128, 128, 1.0), (96, 128, 0.75), (192, 128, 0.75), (320, 128, 320 / 384),
    (96, 1, 1.0), (48, 64, 0.75),
])
def test_tile_quantization_charges_whole_tiles(channels, tile, useful):
    assert compute.tile_quantization(channels, tile) == pytest.approx(useful, rel=1e-12)
    layers = net(conv("a", 1024, 64, 64, (1, 1)), conv("b", 1024, channels, 256, (1, 1)))
    fixed = constants(tile_n=tile)
    times = compute.layer_times(layers, A100, 8, "fp16", fixed, memory_format="nhwc")
    flop = 8 * layers.layers[1].forward_flops
    assert times.loc[1, "forward_s"] == pytest.approx(flop / (312e12 * 0.8 * 0.9 * useful),
                                                      rel=1e-9)


def test_cnn_builders_record_filter_and_stride():
    resnet = {layer.name: layer for layer in workload("resnet50").layers}
    assert resnet["conv1"].kernel == (7, 7) and resnet["conv1"].stride == 2
    vgg_convs = [layer for layer in workload("vgg16").layers if layer.kind == "conv"]
    assert len(vgg_convs) == 13
    assert all(layer.kernel == (3, 3) and layer.stride == 1 for layer in vgg_convs)
    inception = [layer.kernel for layer in workload("inception-v3").layers
                 if layer.kind == "conv"]
    assert (1, 7) in inception and (7, 1) in inception
    assert all(layer.kernel is None for layer in workload("vgg16").layers
               if layer.kind != "conv")


def test_default_winograd_makes_vgg16_fp32_faster_than_the_gemm_rate_allows():
    """TensorFlow's published DGX-1 P100 VGG16 rate (154 img/s, 3 x 31 GFLOP each) is
    about 14 TFLOP/s of direct-convolution arithmetic, above the 10.6 TFLOP/s FP32 peak:
    only reduced-arithmetic algorithms reach it, and the model must too."""
    vgg = workload("vgg16")
    throughput = compute.training_throughput_samples_per_s(vgg, P100, 64, "fp32", None)
    direct_flop_per_s = throughput * 3 * vgg.forward_flops_per_sample
    assert direct_flop_per_s > P100.matrix_peak_flops_per_s("fp32")
    assert throughput == pytest.approx(154.0, rel=0.15)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"winograd_reduction": 0.5}, "calibration.winograd_reduction"),
    ({"winograd_min_pixels": -1.0}, "calibration.winograd_min_pixels"),
    ({"tile_n": 0}, "calibration.tile_n"),
    ({"conv_fraction_of_gemm": {"simt": 1.5}}, "calibration.conv_fraction_of_gemm.simt"),
    ({"conv_fraction_of_gemm": {"matrix": 0.5}}, "calibration.conv_fraction_of_gemm"),
])
def test_bad_constants_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as raised:
        constants(**overrides)
    assert raised.value.field == field
